{{/*
The Envoy gateway's bootstrap: the repository's envoy/envoy.yaml (read its
comments for the reasons behind each setting) with gatehouse reached through
its Services, and the routes taken from envoyGateway values.

  client ──▶ Envoy :containerPort ──ext_authz gRPC Check──▶ gatehouse (grpc port)
                 ├── /.well-known/*, /auth/jwt/* ──HTTP──▶ gatehouse (http port)
                 └── allowed requests (with gatehouse's headers) ──▶ upstream
*/}}
{{- define "gatehouse.envoyConfig" -}}
{{- $gw := .Values.envoyGateway }}
{{- $gatehouseHost := include "gatehouse.serviceFQDN" . }}
{{- $grpcPort := .Values.service.grpcPort }}
{{- $httpPort := .Values.service.httpPort }}
{{- if .Values.headlessService.enabled }}
{{- $gatehouseHost = printf "%s-headless.%s.svc.%s" (include "gatehouse.fullname" .) .Release.Namespace .Values.clusterDomain }}
{{- $grpcPort = .Values.ports.grpc }}
{{- $httpPort = .Values.ports.http }}
{{- end }}
{{- $ipv6 := contains ":" .Values.listenAddress }}
admin:
  # Stats, /ready, /config_dump: loopback only.
  address:
    socket_address: {address: 127.0.0.1, port_value: 9901}

static_resources:
  listeners:
    - name: main
      address:
        socket_address:
          address: {{ if $ipv6 }}"::"{{ else }}0.0.0.0{{ end }}
          port_value: {{ $gw.containerPort }}
          {{- if $ipv6 }}
          ipv4_compat: true
          {{- end }}
      filter_chains:
        - filters:
            - name: envoy.filters.network.http_connection_manager
              typed_config:
                "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
                stat_prefix: ingress
                codec_type: AUTO
                use_remote_address: {{ $gw.useRemoteAddress }}
                xff_num_trusted_hops: {{ $gw.xffNumTrustedHops }}
                # Route and check the same path: normalize, merge slashes,
                # refuse encoded slashes at the edge.
                normalize_path: true
                merge_slashes: true
                path_with_escaped_slashes_action: REJECT_REQUEST
                common_http_protocol_options:
                  headers_with_underscores_action: DROP_HEADER
                access_log:
                  # No query string: it may hold a token.
                  - name: envoy.access_loggers.stdout
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog
                      log_format:
                        text_format_source:
                          inline_string: "[%START_TIME%] \"%REQ(:METHOD)% %REQ_WITHOUT_QUERY(:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %DURATION%ms peer=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% xff=\"%REQ(X-FORWARDED-FOR)%\" upstream=%UPSTREAM_HOST% id=%REQ(X-REQUEST-ID)%\n"
                        formatters:
                          - name: envoy.formatter.req_without_query
                            typed_config:
                              "@type": type.googleapis.com/envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery
                route_config:
                  name: local_routes
                  virtual_hosts:
                    - name: all
                      domains: ["*"]
                      routes:
                        {{- if $gw.routeSidePort }}
                        # Gatehouse's own endpoints on its side port; it
                        # authenticates these requests itself.
                        {{- range list "/.well-known/jwks.json" "/.well-known/openid-configuration" "/auth/jwt/request" "/auth/jwt/set" }}
                        - match: {path: {{ . }}}
                          route: {cluster: gatehouse_http}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              disabled: true
                        {{- end }}
                        # The API-token REST API (/auth/api/v1/...).
                        - match: {prefix: /auth/api/}
                          route: {cluster: gatehouse_http}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              disabled: true
                        # Browser login (login.providers).
                        - match: {path: /auth/login}
                          route: {cluster: gatehouse_http}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              disabled: true
                        - match: {path: /auth/callback}
                          route: {cluster: gatehouse_http}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              disabled: true
                        - match: {path: /auth/logout}
                          route: {cluster: gatehouse_http}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              disabled: true
                        - match: {path: /auth/userinfo}
                          route: {cluster: gatehouse_http}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              disabled: true
                        # OIDC Back-Channel Logout (a signed logout token).
                        - match: {path: /auth/backchannel-logout}
                          route: {cluster: gatehouse_http}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              disabled: true
                        # Per-user backend tokens (backends).
                        - match: {prefix: /auth/backends/}
                          route: {cluster: gatehouse_http}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              disabled: true
                        # Command-line login (cli): the poll token and the
                        # session cookie are checked by gatehouse itself.
                        - match: {prefix: /auth/cli/}
                          route: {cluster: gatehouse_http}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              disabled: true
                        {{- end }}
                        {{- range $gw.publicPrefixes }}
                        # Public: no check, so remove the identity headers
                        # gatehouse would otherwise strip.
                        - match: {prefix: {{ toJson . }}}
                          route: {cluster: upstream}
                          request_headers_to_remove:
                            - x-auth-request-user
                            - x-auth-request-email
                            - x-auth-request-uid
                            - x-auth-request-groups
                            - x-auth-request-token
                            - x-auth-request-token-scopes
                            - x-auth-request-token-scopes-accepted
                            - x-auth-request-token-scopes-satisfy
                            - x-auth-request-client-ip
                            - x-auth-request-tool
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              disabled: true
                        {{- end }}
                        {{- range $gw.routes }}
                        - match: {prefix: {{ toJson .prefix }}}
                          route: {cluster: upstream}
                          typed_per_filter_config:
                            envoy.filters.http.ext_authz:
                              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthzPerRoute
                              check_settings:
                                context_extensions: {{ toJson .contextExtensions }}
                        {{- end }}
                        # Everything else: gatehouse's own rules decide.
                        - match: {prefix: /}
                          route: {cluster: upstream}
                http_filters:
                  - name: envoy.filters.http.ext_authz
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
                      transport_api_version: V3
                      grpc_service:
                        envoy_grpc: {cluster_name: gatehouse}
                        timeout: {{ $gw.checkTimeout }}
                        # A Check lost with a pod (refused, reset) goes to
                        # another pod; max_interval is also the per-try
                        # timeout, so it equals the deadline above.
                        retry_policy:
                          retry_on: connect-failure,refused-stream,reset,unavailable
                          num_retries: 2
                          retry_back_off: {base_interval: 0.025s, max_interval: {{ $gw.checkTimeout }}}
                          retry_host_predicate:
                            - name: envoy.retry_host_predicates.previous_hosts
                              typed_config:
                                "@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate
                          host_selection_retry_max_attempts: 3
                      # Fail closed: gatehouse down or late means 503.
                      failure_mode_allow: false
                      status_on_error: {code: ServiceUnavailable}
                      include_peer_certificate: true
                  - name: envoy.filters.http.router
                    typed_config:
                      "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router

  clusters:
    # Gatehouse's gRPC port over HTTP/2. STRICT_DNS on the headless Service
    # balances Check calls per request over every ready pod; the active gRPC
    # health check takes a draining pod (NOT_SERVING) out before DNS does.
    - name: gatehouse
      type: STRICT_DNS
      dns_lookup_family: V4_PREFERRED
      dns_refresh_rate: 5s
      connect_timeout: 0.25s
      typed_extension_protocol_options:
        envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
          "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
          explicit_http_config:
            http2_protocol_options: {}
      health_checks:
        - timeout: 1s
          interval: 5s
          unhealthy_threshold: 2
          healthy_threshold: 1
          grpc_health_check: {}
      # Three failed checks in a row (refused, reset, UNAVAILABLE) eject a
      # pod for 5 s; a denial is an answer, not a failure.
      outlier_detection:
        consecutive_5xx: 3
        consecutive_gateway_failure: 3
        interval: 1s
        base_ejection_time: 5s
        max_ejection_percent: 50
      load_assignment:
        cluster_name: gatehouse
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {address: {{ $gatehouseHost }}, port_value: {{ $grpcPort }}}

    # Gatehouse's HTTP side port.
    - name: gatehouse_http
      type: STRICT_DNS
      dns_lookup_family: V4_PREFERRED
      dns_refresh_rate: 5s
      connect_timeout: 0.25s
      load_assignment:
        cluster_name: gatehouse_http
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {address: {{ $gatehouseHost }}, port_value: {{ $httpPort }}}

    # The protected application.
    - name: upstream
      type: STRICT_DNS
      dns_lookup_family: V4_PREFERRED
      connect_timeout: 1s
      load_assignment:
        cluster_name: upstream
        endpoints:
          - lb_endpoints:
              - endpoint:
                  address:
                    socket_address: {address: {{ $gw.upstream.host }}, port_value: {{ $gw.upstream.port }}}
{{- end }}
