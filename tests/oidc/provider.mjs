// The OpenID Provider of the end-to-end tests: npm `oidc-provider` (a
// certified OP) with its built-in login and consent pages (devInteractions).
//
//   node tests/oidc/provider.mjs <config.json>     (or OIDC_PROVIDER_CONFIG=<path>)
//
// tests/e2e/harness/oidc.py writes the config and starts this script; the
// config's keys are documented in CONTRIBUTING.md ("The OpenID Provider in
// the tests"). One line per request goes to stdout, without query values,
// bodies or headers, so no code, token or password reaches the log.
//
// The device flow (RFC 8628) is on unless `device_flow` is false (then the
// discovery document names no device_authorization_endpoint);
// `ttl.device_code` sets how long a device code lives (default 600 s).
//
// Test-only endpoints (`test_endpoints`, on by default):
//   POST /test/end-session       sub=<login>: ends every session of that
//       subject as an administrator would: a back-channel logout token to each
//       client of the session that registered a backchannel_logout_uri, then
//       the session and its grants (so refresh tokens) are gone. JSON reply.
//   POST /test/backchannel-logout client_id=&sub=&sid=: sends one logout
//       token to that client, changes nothing at the provider. JSON reply.
//   POST /test/revoke-grants     sub=<login>: revokes every grant of that
//       subject (its refresh and access tokens stop working), sessions stay.
//   POST /test/token-requests    how many token endpoint requests were
//       answered, by grant type and status: {"refresh_token": {"200": 1}}.
//   POST /test/device-polls      how device-code token requests were
//       answered: {"authorization_pending": 2, "slow_down": 0, "200": 1}.
//   POST /test/device-slow-down  the next pending device-code poll is
//       answered slow_down.
//   POST /test/introspections    how introspection requests were answered:
//       {"active": 2, "inactive": 1, "error": 0}.
//
// With `token_claims`, opaque access tokens carry the account's `email` and
// `groups` (so introspection answers name them, as Keycloak's do).
//
// With `token_exchange: {audiences: [...]}`, the token endpoint accepts RFC
// 8693 token exchange (grant_type urn:ietf:params:oauth:grant-type:
// token-exchange) from clients registered with that grant type: a live
// opaque access token (`subject_token`, type access_token) is exchanged for
// a new opaque access token of the same account with `aud` = the requested
// `audience` (one of `audiences`, else invalid_target) and the requested
// `scope` narrowed to the subject token's (default: all of them).
//
// With `issued_tokens_file` in the config, every access, refresh and ID
// token the token endpoint hands out is appended to that file (mode 0600),
// one `<kind>\t<token>` line each: the harness records them for the
// secret-leak check of gatehouse's logs. It is not the log (stdout).

import { appendFileSync, readFileSync } from 'node:fs';
import http from 'node:http';
import { createHash, randomBytes } from 'node:crypto';

import Provider, { errors } from 'oidc-provider';

const configPath = process.argv[2] || process.env.OIDC_PROVIDER_CONFIG;
if (!configPath) {
  console.error('usage: node provider.mjs <config.json> (or set OIDC_PROVIDER_CONFIG)');
  process.exit(2);
}

let cfg;
try {
  cfg = JSON.parse(readFileSync(configPath, 'utf8'));
} catch (err) {
  console.error(`cannot read the config ${configPath}: ${err.message}`);
  process.exit(2);
}
for (const key of ['issuer', 'port', 'clients', 'jwks']) {
  if (cfg[key] === undefined) {
    console.error(`config ${configPath}: missing "${key}"`);
    process.exit(2);
  }
}

const host = cfg.host || '127.0.0.1';
const ttl = cfg.ttl || {};
const groups = cfg.groups || {};
const prefix = cfg.cookie_prefix || 'op';

// --- storage: one Map, so that the test endpoints can find sessions by sub --

const store = new Map(); // `${model}:${id}` -> { payload, expiresAt }

function live(key) {
  const entry = store.get(key);
  if (!entry) return undefined;
  if (entry.expiresAt !== undefined && entry.expiresAt <= Date.now()) {
    store.delete(key);
    return undefined;
  }
  return entry.payload;
}

class MapAdapter {
  constructor(model) {
    this.model = model;
  }

  key(id) {
    return `${this.model}:${id}`;
  }

  async upsert(id, payload, expiresIn) {
    const expiresAt = expiresIn ? Date.now() + expiresIn * 1000 : undefined;
    store.set(this.key(id), { payload: structuredClone(payload), expiresAt });
  }

  async find(id) {
    const payload = live(this.key(id));
    return payload && structuredClone(payload);
  }

  async findByUid(uid) {
    return this.findBy((p) => p.uid === uid);
  }

  async findByUserCode(userCode) {
    return this.findBy((p) => p.userCode === userCode);
  }

  async findBy(predicate) {
    for (const key of store.keys()) {
      if (!key.startsWith(`${this.model}:`)) continue;
      const payload = live(key);
      if (payload && predicate(payload)) return structuredClone(payload);
    }
    return undefined;
  }

  async consume(id) {
    const entry = store.get(this.key(id));
    if (entry) entry.payload.consumed = Math.floor(Date.now() / 1000);
  }

  async destroy(id) {
    store.delete(this.key(id));
  }

  async revokeByGrantId(grantId) {
    revokeGrant(grantId);
  }
}

// Every artifact of a grant (tokens, codes, the grant itself) across models.
function revokeGrant(grantId) {
  for (const [key, entry] of store) {
    if (entry.payload.grantId === grantId || key === `Grant:${grantId}`) store.delete(key);
  }
}

function sessionsOf(sub) {
  const found = [];
  for (const key of store.keys()) {
    if (!key.startsWith('Session:')) continue;
    const payload = live(key);
    if (payload && payload.accountId === sub) found.push({ key, payload });
  }
  return found;
}

// --- accounts -------------------------------------------------------------

function account(sub) {
  return {
    accountId: sub,
    async claims() {
      return {
        sub,
        email: `${sub}@example.org`,
        email_verified: true,
        name: sub,
        preferred_username: sub,
        groups: groups[sub] || [],
      };
    },
  };
}

// --- the provider -------------------------------------------------------------

const seconds = (value, fallback) => (Number.isFinite(value) ? value : fallback);

const configuration = {
  adapter: MapAdapter,
  clients: cfg.clients,
  jwks: cfg.jwks,
  findAccount: async (_ctx, sub) => account(sub),
  claims: {
    openid: ['sub'],
    email: ['email', 'email_verified'],
    profile: ['name', 'preferred_username'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'email', 'profile', 'groups'],
  conformIdTokenClaims: false,
  pkce: { required: () => true },
  // Refresh tokens whenever the client may use them, not only with the
  // offline_access scope (which oidc-provider drops unless prompt=consent).
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  rotateRefreshToken: () => cfg.rotate_refresh_tokens !== false,
  ttl: {
    AccessToken: seconds(ttl.access_token, 10),
    IdToken: seconds(ttl.id_token, 10),
    RefreshToken: seconds(ttl.refresh_token, 3600),
    AuthorizationCode: seconds(ttl.authorization_code, 60),
    Session: seconds(ttl.session, 3600),
    Grant: seconds(ttl.grant, 3600),
    Interaction: seconds(ttl.interaction, 600),
    DeviceCode: seconds(ttl.device_code, 600),
  },
  cookies: {
    names: {
      session: `${prefix}_session`,
      interaction: `${prefix}_interaction`,
      resume: `${prefix}_interaction_resume`,
    },
    keys: cfg.cookie_keys || [randomBytes(32).toString('base64url')],
  },
  features: {
    devInteractions: { enabled: true },
    backchannelLogout: { enabled: true },
    rpInitiatedLogout: { enabled: true },
    revocation: { enabled: true },
    introspection: { enabled: true },
    userinfo: { enabled: true },
    // RFC 8628 (device authorization grant), for clients registered with
    // the urn:ietf:params:oauth:grant-type:device_code grant type. Its
    // built-in pages: GET /device?user_code= posts the code to
    // POST /device, which shows the confirmation form (op.deviceConfirmForm,
    // "Continue" or "[ Abort ]"), then the login and consent, then success.
    deviceFlow: { enabled: cfg.device_flow !== false },
  },
  // oidc-provider refuses outgoing requests to loopback and private addresses
  // (SSRF protection through an undici dispatcher); the tests' relying
  // parties live on 127.0.0.1, so drop that dispatcher.
  fetch: (url, options) => {
    const { dispatcher: _ssrfGuard, ...rest } = options;
    return globalThis.fetch(url, rest);
  },
  extraTokenClaims: async (_ctx, token) => (cfg.token_claims && token.accountId
    ? { email: `${token.accountId}@example.org`, groups: groups[token.accountId] || [] }
    : undefined),
  renderError: async (ctx, out) => {
    ctx.type = 'html';
    const esc = (s) => String(s).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
    ctx.body = `<!DOCTYPE html><title>oidc-provider error</title><h1>${esc(out.error)}</h1><p>${esc(out.error_description || '')}</p>`;
  },
};

if (cfg.auto_consent) {
  // First-party clients: every requested scope is granted without asking.
  configuration.loadExistingGrant = async (ctx) => {
    const { provider, session, client } = ctx.oidc;
    const grantId = ctx.oidc.result?.consent?.grantId || session.grantIdFor(client.clientId);
    const grant = grantId
      ? await provider.Grant.find(grantId)
      : new provider.Grant({ clientId: client.clientId, accountId: session.accountId });
    grant.addOIDCScope([...ctx.oidc.requestParamScopes].join(' '));
    await grant.save();
    return grant;
  };
}

const provider = new Provider(cfg.issuer, configuration);

// --- RFC 8693 token exchange -------------------------------------------------------

const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN_TYPE = 'urn:ietf:params:oauth:token-type:access_token';

if (cfg.token_exchange) {
  const audiences = new Set(cfg.token_exchange.audiences || []);
  provider.registerGrantType(TOKEN_EXCHANGE, async (ctx) => {
    const { params, client } = ctx.oidc;
    if (params.subject_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('subject_token_type must be an access token');
    }
    if (params.requested_token_type && params.requested_token_type !== ACCESS_TOKEN_TYPE) {
      throw new errors.InvalidRequest('only access tokens are issued');
    }
    const subject = await provider.AccessToken.find(String(params.subject_token || ''));
    if (!subject || !subject.isValid || !subject.accountId) {
      throw new errors.InvalidGrant('subject_token is not an active access token');
    }
    if (!audiences.has(params.audience)) throw new errors.InvalidTarget('audience not allowed');
    const held = new Set(String(subject.scope || '').split(' ').filter(Boolean));
    const asked = params.scope ? String(params.scope).split(' ') : [...held];
    if (asked.some((s) => !held.has(s))) throw new errors.InvalidScope('scope exceeds the subject token', params.scope);
    const token = new provider.AccessToken({
      accountId: subject.accountId,
      client,
      scope: asked.join(' ') || undefined,
      gty: 'token_exchange',
    });
    token.setAudience(params.audience);
    const value = await token.save();
    ctx.body = {
      access_token: value,
      issued_token_type: ACCESS_TOKEN_TYPE,
      token_type: 'Bearer',
      expires_in: token.expiration,
      scope: token.scope,
    };
  }, ['subject_token', 'subject_token_type', 'requested_token_type', 'audience', 'scope']);
}

// --- log: one line per request, no query values --------------------------------

// Query values go, only their names stay. Long random path segments
// (interaction uids, which are also cookie values) become a short fingerprint, so that
// lines of one interaction can still be matched.
function redactedUrl(url) {
  const q = url.indexOf('?');
  const path = (q < 0 ? url : url.slice(0, q)).split('/').map((segment) => (
    segment.length >= 16 && /[0-9A-Z]/.test(segment)
      ? `~${createHash('sha256').update(segment).digest('hex').slice(0, 8)}`
      : segment
  )).join('/');
  if (q < 0) return path;
  const names = new URLSearchParams(url.slice(q + 1)).keys();
  return `${path}?${[...new Set(names)].join(',')}`;
}

provider.use(async (ctx, next) => {
  const started = process.hrtime.bigint();
  try {
    await next();
  } finally {
    const ms = Number(process.hrtime.bigint() - started) / 1e6;
    console.log(`${new Date().toISOString()} ${ctx.method} ${redactedUrl(ctx.originalUrl)} ${ctx.status} ${ms.toFixed(1)}ms`);
  }
});

// --- what the token endpoint answered: counted, and its tokens kept for the leak check --

const tokenRequests = {}; // grant_type -> status -> count

provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route !== 'token') return;
  const grantType = String(ctx.oidc.params?.grant_type || 'none');
  const byStatus = (tokenRequests[grantType] ||= {});
  byStatus[ctx.status] = (byStatus[ctx.status] || 0) + 1;
  const body = ctx.body;
  if (cfg.issued_tokens_file && ctx.status === 200 && body && typeof body === 'object') {
    const lines = ['access_token', 'refresh_token', 'id_token']
      .filter((kind) => typeof body[kind] === 'string')
      .map((kind) => `${kind}\t${body[kind]}\n`)
      .join('');
    if (lines) appendFileSync(cfg.issued_tokens_file, lines, { mode: 0o600 });
  }
});

// --- introspection: what it answered -----------------------------------------------

const introspections = { active: 0, inactive: 0, error: 0 };

provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route !== 'introspection') return;
  if (ctx.status !== 200) introspections.error += 1;
  else if (ctx.body?.active === true) introspections.active += 1;
  else introspections.inactive += 1;
});

// --- the device flow: an interval, slow_down, and what the polls were answered --

// RFC 8628 lets the provider name the polling interval (oidc-provider names
// none: clients then wait 5 s); `device_interval` sets one. A device code
// polled sooner than that after its previous poll is answered `slow_down`
// instead of `authorization_pending`, as RFC 8628 section 3.5 allows; so is
// the next pending poll after POST /test/device-slow-down.
const deviceInterval = Number.isFinite(cfg.device_interval) ? cfg.device_interval : undefined;
const devicePolls = {}; // answer (`200` or the error code) -> count
const lastDevicePoll = new Map(); // device code -> ms of its previous poll
let forcedSlowDowns = 0;

provider.use(async (ctx, next) => {
  await next();
  if (ctx.oidc?.route === 'device_authorization' && ctx.status === 200 && deviceInterval !== undefined) {
    ctx.body = { ...ctx.body, interval: deviceInterval };
    return;
  }
  if (ctx.oidc?.route !== 'token' || ctx.oidc.params?.grant_type !== 'urn:ietf:params:oauth:grant-type:device_code') return;
  const code = String(ctx.oidc.params.device_code || '');
  const now = Date.now();
  const previous = lastDevicePoll.get(code);
  lastDevicePoll.set(code, now);
  let answer = ctx.status === 200 ? '200' : String(ctx.body?.error || ctx.status);
  const tooSoon = previous !== undefined && now - previous < (deviceInterval ?? 5) * 1000;
  if (answer === 'authorization_pending' && (tooSoon || forcedSlowDowns > 0)) {
    if (!tooSoon) forcedSlowDowns -= 1;
    answer = 'slow_down';
    ctx.body = { error: 'slow_down', error_description: 'you are polling too quickly' };
  }
  devicePolls[answer] = (devicePolls[answer] || 0) + 1;
});

for (const event of ['backchannel.success', 'backchannel.error', 'server_error', 'end_session.success']) {
  provider.on(event, (...args) => {
    const err = args.find((a) => a instanceof Error);
    const client = args.find((a) => a && typeof a === 'object' && 'clientId' in a);
    console.log(`event ${event}${client ? ` client=${client.clientId}` : ''}${err ? ` error=${err.message}` : ''}`);
  });
}

// --- test endpoints -------------------------------------------------------------

async function formBody(req) {
  const chunks = [];
  for await (const chunk of req) chunks.push(chunk);
  return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
}

async function notify(client, sub, sid) {
  try {
    await client.backchannelLogout(sub, sid);
    return null;
  } catch (err) {
    return `${client.clientId}: ${err.message}`;
  }
}

const testRoutes = {
  '/test/end-session': async (params) => {
    const sub = params.get('sub');
    if (!sub) return [400, { error: 'sub is required' }];
    const notified = [];
    const errors = [];
    const sessions = sessionsOf(sub);
    for (const { key, payload } of sessions) {
      for (const [clientId, auth] of Object.entries(payload.authorizations || {})) {
        const client = await provider.Client.find(clientId);
        if (client?.backchannelLogoutUri) {
          const error = await notify(client, sub, auth.sid);
          if (error) errors.push(error); else notified.push(clientId);
        }
        if (auth.grantId) revokeGrant(auth.grantId);
      }
      store.delete(key);
    }
    return [200, { sessions: sessions.length, notified, errors }];
  },
  '/test/backchannel-logout': async (params) => {
    const client = await provider.Client.find(params.get('client_id') || '');
    if (!client?.backchannelLogoutUri) return [400, { error: 'unknown client or no backchannel_logout_uri' }];
    const error = await notify(client, params.get('sub') || '', params.get('sid') || undefined);
    return error ? [502, { error }] : [200, { notified: [client.clientId] }];
  },
  '/test/revoke-grants': async (params) => {
    const sub = params.get('sub');
    if (!sub) return [400, { error: 'sub is required' }];
    const grants = [];
    for (const key of store.keys()) {
      if (!key.startsWith('Grant:')) continue;
      const payload = live(key);
      if (payload && payload.accountId === sub) grants.push(key.slice('Grant:'.length));
    }
    grants.forEach(revokeGrant);
    return [200, { grants: grants.length }];
  },
  '/test/token-requests': async () => [200, tokenRequests],
  '/test/device-polls': async () => [200, devicePolls],
  '/test/introspections': async () => [200, introspections],
  '/test/device-slow-down': async () => {
    forcedSlowDowns += 1;
    return [200, { pending: forcedSlowDowns }];
  },
};

const handler = provider.callback();
const server = http.createServer(async (req, res) => {
  const path = req.url.split('?')[0];
  const route = cfg.test_endpoints !== false && req.method === 'POST' && testRoutes[path];
  if (!route) {
    handler(req, res);
    return;
  }
  const started = process.hrtime.bigint();
  let status = 500;
  let body;
  try {
    [status, body] = await route(await formBody(req));
  } catch (err) {
    body = { error: err.message };
  }
  res.writeHead(status, { 'content-type': 'application/json' });
  res.end(JSON.stringify(body));
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  console.log(`${new Date().toISOString()} POST ${path} ${status} ${ms.toFixed(1)}ms`);
});

server.listen(cfg.port, host, () => {
  console.log(`oidc-provider ready issuer=${cfg.issuer} listening=${host}:${server.address().port}`);
});
server.on('error', (err) => {
  console.error(`cannot listen on ${host}:${cfg.port}: ${err.message}`);
  process.exit(1);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => {
    server.close(() => process.exit(0));
    server.closeAllConnections();
    setTimeout(() => process.exit(0), 1000).unref();
  });
}
