//! Envoy's `x-forwarded-client-cert` header: comma-separated elements,
//! one per proxy hop that saw a client certificate, each a `;`-separated
//! list of `Key=value` pairs (`By`, `Hash`, `Cert`, `Chain`, `Subject`,
//! `URI`, `DNS`). Values may be double-quoted; inside quotes `,`, `;` and
//! `=` are literal and `\"` is a quote.
//!
//! A backslash followed by anything other than `"` is kept as it is (both
//! characters): Envoy escapes only quotes, and a `Subject` holds an RFC
//! 4514 DN whose own escapes (`\,`, `\\`) the DN parser reads next.
//!
//! The header is only believed when the request's direct peer is a trusted
//! proxy; that decision belongs to the certificate authenticator.

/// Longest header accepted.
pub const MAX_XFCC_BYTES: usize = 64 * 1024;
/// Most elements (proxy hops) in one header.
pub const MAX_ELEMENTS: usize = 32;
/// Most `key=value` pairs in one element.
pub const MAX_PAIRS: usize = 32;

/// Why the header could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum XfccError {
    /// Empty, or only whitespace.
    #[error("empty header")]
    Empty,
    /// Longer than [`MAX_XFCC_BYTES`], or too many elements or pairs.
    #[error("header too long")]
    TooLong,
    /// A key is missing or holds characters other than letters, digits,
    /// `-` and `_`.
    #[error("malformed key at byte {0}")]
    BadKey(usize),
    /// `=` expected after a key.
    #[error("expected '=' at byte {0}")]
    ExpectedEquals(usize),
    /// A quoted value with no closing quote.
    #[error("unterminated quoted value at byte {0}")]
    Unterminated(usize),
    /// A quote inside an unquoted value, or text after a closing quote.
    #[error("unexpected character at byte {0}")]
    Unexpected(usize),
    /// `By`, `Hash`, `Cert`, `Chain` or `Subject` twice in one element.
    #[error("duplicate {0} in one element")]
    Duplicate(&'static str),
}

/// One element: what one proxy says about the client certificate it saw.
/// Values are as they appear in the header, unquoted; `Cert` and `Chain`
/// are still URL-encoded PEM.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct XfccElement {
    /// `By`: the SAN of the proxy's own certificate.
    pub by: Option<String>,
    /// `Hash`: SHA-256 of the client certificate, hex.
    pub hash: Option<String>,
    /// `Cert`: the URL-encoded PEM of the client certificate.
    pub cert: Option<String>,
    /// `Chain`: the URL-encoded PEM of the client certificate chain.
    pub chain: Option<String>,
    /// `Subject`: the client certificate's subject DN (RFC 4514 / 2253).
    pub subject: Option<String>,
    /// `URI`: URI SANs (e.g. SPIFFE IDs).
    pub uris: Vec<String>,
    /// `DNS`: DNS SANs.
    pub dns: Vec<String>,
}

/// Which element to believe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ElementChoice {
    /// The last one: added by the proxy closest to us.
    #[default]
    Last,
    /// The first one: added by the proxy closest to the client.
    First,
    /// By position: from 0 at the start, or from -1 at the end.
    Index(i64),
}

impl ElementChoice {
    /// The chosen element, if there is one at that position.
    pub fn select(self, elements: &[XfccElement]) -> Option<&XfccElement> {
        match self {
            ElementChoice::Last => elements.last(),
            ElementChoice::First => elements.first(),
            ElementChoice::Index(i) if i >= 0 => {
                usize::try_from(i).ok().and_then(|i| elements.get(i))
            }
            ElementChoice::Index(i) => usize::try_from(i.unsigned_abs())
                .ok()
                .and_then(|back| elements.len().checked_sub(back))
                .and_then(|i| elements.get(i)),
        }
    }
}

/// Parses the whole header into its elements.
pub fn parse(header: &str) -> Result<Vec<XfccElement>, XfccError> {
    if header.len() > MAX_XFCC_BYTES {
        return Err(XfccError::TooLong);
    }
    if header.trim().is_empty() {
        return Err(XfccError::Empty);
    }
    let mut parser = Parser {
        bytes: header.as_bytes(),
        pos: 0,
    };
    let mut elements = Vec::new();
    let mut element = XfccElement::default();
    let mut pairs = 0usize;
    loop {
        pairs += 1;
        if pairs > MAX_PAIRS {
            return Err(XfccError::TooLong);
        }
        let (key, value) = parser.pair()?;
        add(&mut element, &key, value)?;
        parser.skip_spaces();
        match parser.peek() {
            None => {
                elements.push(element);
                return Ok(elements);
            }
            Some(b';') => parser.pos += 1,
            Some(b',') => {
                parser.pos += 1;
                elements.push(std::mem::take(&mut element));
                pairs = 0;
                if elements.len() >= MAX_ELEMENTS {
                    return Err(XfccError::TooLong);
                }
            }
            Some(_) => return Err(XfccError::Unexpected(parser.pos)),
        }
    }
}

fn add(element: &mut XfccElement, key: &str, value: String) -> Result<(), XfccError> {
    let once = |slot: &mut Option<String>, name: &'static str| {
        if slot.is_some() {
            return Err(XfccError::Duplicate(name));
        }
        *slot = Some(value.clone());
        Ok(())
    };
    match key.to_ascii_lowercase().as_str() {
        "by" => once(&mut element.by, "By"),
        "hash" => once(&mut element.hash, "Hash"),
        "cert" => once(&mut element.cert, "Cert"),
        "chain" => once(&mut element.chain, "Chain"),
        "subject" => once(&mut element.subject, "Subject"),
        "uri" => {
            element.uris.push(value);
            Ok(())
        }
        "dns" => {
            element.dns.push(value);
            Ok(())
        }
        // Keys a newer proxy may add: well-formed, so tolerated.
        _ => Ok(()),
    }
}

struct Parser<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_spaces(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    fn pair(&mut self) -> Result<(String, String), XfccError> {
        self.skip_spaces();
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            self.pos += 1;
        }
        if self.pos == start {
            return Err(XfccError::BadKey(start));
        }
        let key = String::from_utf8_lossy(&self.bytes[start..self.pos]).into_owned();
        self.skip_spaces();
        if self.peek() != Some(b'=') {
            return Err(XfccError::ExpectedEquals(self.pos));
        }
        self.pos += 1;
        let value = if self.peek() == Some(b'"') {
            self.quoted()?
        } else {
            self.unquoted()?
        };
        Ok((key, value))
    }

    fn quoted(&mut self) -> Result<String, XfccError> {
        let open = self.pos;
        self.pos += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            match self.peek() {
                None => return Err(XfccError::Unterminated(open)),
                Some(b'"') => {
                    self.pos += 1;
                    break;
                }
                Some(b'\\') => match self.bytes.get(self.pos + 1).copied() {
                    Some(b'"') => {
                        out.push(b'"');
                        self.pos += 2;
                    }
                    Some(other) => {
                        out.extend_from_slice(&[b'\\', other]);
                        self.pos += 2;
                    }
                    None => return Err(XfccError::Unterminated(open)),
                },
                Some(b) => {
                    out.push(b);
                    self.pos += 1;
                }
            }
        }
        // The input is a &str and quotes and backslashes are ASCII, so the
        // bytes between them are whole UTF-8 sequences.
        Ok(String::from_utf8_lossy(&out).into_owned())
    }

    fn unquoted(&mut self) -> Result<String, XfccError> {
        let start = self.pos;
        while let Some(b) = self.peek() {
            match b {
                b';' | b',' => break,
                b'"' => return Err(XfccError::Unexpected(self.pos)),
                _ => self.pos += 1,
            }
        }
        let raw = String::from_utf8_lossy(&self.bytes[start..self.pos]);
        Ok(raw.trim_matches([' ', '\t']).to_string())
    }
}

#[cfg(test)]
mod tests;
