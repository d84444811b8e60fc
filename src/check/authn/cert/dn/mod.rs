//! Distinguished names (RFC 4514): parsed from their string form (an XFCC
//! `Subject=`, a principal, a configured pattern) or read from a
//! certificate's ASN.1 structure, and rendered back in RFC 4514 form.
//!
//! The parser accepts escaped characters (`\,` and `\2C` alike), `+`
//! multi-valued RDNs, hex-encoded BER values (`#0C03666F6F`), spaces around
//! separators and `;` between RDNs (RFC 2253 compatibility), attribute
//! types by name or by dotted OID, and attributes in any order. Values
//! holding control characters (a NUL in a CN is the classic certificate
//! spoofing trick) are refused, so a parsed name is always safe to log and
//! to put in a header.

use std::fmt;

/// Longest DN string accepted.
pub const MAX_DN_BYTES: usize = 8 * 1024;
/// Most attributes in one DN.
pub const MAX_ATTRIBUTES: usize = 64;

/// Why a DN could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnError {
    /// Longer than [`MAX_DN_BYTES`] or more than [`MAX_ATTRIBUTES`].
    #[error("distinguished name too long")]
    TooLong,
    /// An attribute type is missing or malformed.
    #[error("malformed attribute type at byte {0}")]
    BadType(usize),
    /// `=` expected after the attribute type.
    #[error("expected '=' at byte {0}")]
    ExpectedEquals(usize),
    /// A backslash not followed by a special character or two hex digits.
    #[error("invalid escape at byte {0}")]
    BadEscape(usize),
    /// A `#` value that is not pairs of hex digits.
    #[error("invalid hex value at byte {0}")]
    BadHex(usize),
    /// A character that must be escaped (`"`) appears unescaped.
    #[error("unescaped '\"' at byte {0}")]
    UnescapedQuote(usize),
    /// A separator with nothing after it, or garbage after a value.
    #[error("unexpected character at byte {0}")]
    Unexpected(usize),
    /// A value does not decode to UTF-8.
    #[error("attribute value is not UTF-8")]
    NotUtf8,
    /// A value holds a control character (NUL, newline, ...).
    #[error("attribute value contains a control character")]
    ControlCharacter,
    /// An attribute that must be single-valued appears several times.
    #[error("attribute {0} appears more than once")]
    Ambiguous(String),
}

/// An attribute type: a well-known short name (`CN`, `O`, …, upper-case)
/// or a dotted OID for anything else. `commonName`, `cn` and `2.5.4.3`
/// are all the same type.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttributeType(Box<str>);

/// (OID, canonical name, other names), all names compared case-insensitively.
const KNOWN_TYPES: &[(&str, &str, &[&str])] = &[
    ("2.5.4.3", "CN", &["commonName"]),
    ("2.5.4.4", "SN", &["surname"]),
    ("2.5.4.5", "SERIALNUMBER", &[]),
    ("2.5.4.6", "C", &["countryName"]),
    ("2.5.4.7", "L", &["localityName"]),
    ("2.5.4.8", "ST", &["stateOrProvinceName", "S"]),
    ("2.5.4.9", "STREET", &["streetAddress"]),
    ("2.5.4.10", "O", &["organizationName"]),
    ("2.5.4.11", "OU", &["organizationalUnitName"]),
    ("2.5.4.12", "TITLE", &[]),
    ("2.5.4.42", "GIVENNAME", &["GN"]),
    ("2.5.4.43", "INITIALS", &[]),
    ("2.5.4.44", "GENERATIONQUALIFIER", &[]),
    ("2.5.4.46", "DNQUALIFIER", &[]),
    ("2.5.4.65", "PSEUDONYM", &[]),
    ("2.5.4.97", "ORGANIZATIONIDENTIFIER", &[]),
    ("0.9.2342.19200300.100.1.25", "DC", &["domainComponent"]),
    ("0.9.2342.19200300.100.1.1", "UID", &["userid"]),
    ("1.2.840.113549.1.9.1", "EMAILADDRESS", &["E", "email"]),
];

impl AttributeType {
    /// Parses a type name (`CN`, `commonName`) or a dotted OID (`2.5.4.3`,
    /// also written `OID.2.5.4.3`).
    pub fn parse(text: &str) -> Option<AttributeType> {
        let oid = text
            .get(..4)
            .filter(|p| p.eq_ignore_ascii_case("oid."))
            .map_or(text, |_| &text[4..]);
        if is_numeric_oid(oid) {
            return Some(AttributeType::from_oid(oid));
        }
        let mut bytes = text.bytes();
        let first_alpha = bytes.next().is_some_and(|b| b.is_ascii_alphabetic());
        if !first_alpha || !bytes.all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return None;
        }
        let known = KNOWN_TYPES.iter().find(|(_, name, aliases)| {
            name.eq_ignore_ascii_case(text) || aliases.iter().any(|a| a.eq_ignore_ascii_case(text))
        });
        Some(match known {
            Some((_, name, _)) => AttributeType((*name).into()),
            None => AttributeType(text.to_ascii_uppercase().into()),
        })
    }

    /// The type of a dotted OID: its short name when it has a known one.
    pub fn from_oid(oid: &str) -> AttributeType {
        match KNOWN_TYPES.iter().find(|(known, _, _)| *known == oid) {
            Some((_, name, _)) => AttributeType((*name).into()),
            None => AttributeType(oid.into()),
        }
    }

    /// The canonical name (`CN`) or dotted OID.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for AttributeType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// `1.2.3`: digits separated by single dots, no leading zeros.
fn is_numeric_oid(s: &str) -> bool {
    !s.is_empty()
        && s.split('.').all(|arc| {
            !arc.is_empty()
                && arc.bytes().all(|b| b.is_ascii_digit())
                && (arc == "0" || !arc.starts_with('0'))
        })
        && s.contains('.')
}

/// One `type=value` pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    /// The attribute type.
    pub kind: AttributeType,
    /// The value as text. A value that is not a string type is kept in its
    /// `#hex` BER form (see `opaque`).
    pub value: String,
    /// Whether `value` is the `#hex` form of a non-string value.
    pub opaque: bool,
}

/// A distinguished name, RDNs in RFC 4514 string order (most specific
/// first: `CN=…,OU=…,O=…`), which is the reverse of the ASN.1 order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DistinguishedName {
    rdns: Vec<Vec<Attribute>>,
}

impl DistinguishedName {
    /// Parses an RFC 4514 string. The empty string is the empty DN.
    pub fn parse(input: &str) -> Result<DistinguishedName, DnError> {
        if input.len() > MAX_DN_BYTES {
            return Err(DnError::TooLong);
        }
        Parser {
            bytes: input.as_bytes(),
            pos: 0,
        }
        .dn()
    }

    /// Builds a DN from RDNs given in RFC 4514 order.
    pub fn from_rdns(rdns: Vec<Vec<Attribute>>) -> Result<DistinguishedName, DnError> {
        let count: usize = rdns.iter().map(Vec::len).sum();
        if count > MAX_ATTRIBUTES {
            return Err(DnError::TooLong);
        }
        for a in rdns.iter().flatten() {
            if a.value.chars().any(char::is_control) {
                return Err(DnError::ControlCharacter);
            }
        }
        Ok(DistinguishedName { rdns })
    }

    /// The RDNs, most specific first; each holds one or more attributes.
    pub fn rdns(&self) -> &[Vec<Attribute>] {
        &self.rdns
    }

    /// Every attribute, most specific RDN first.
    pub fn attributes(&self) -> impl Iterator<Item = &Attribute> {
        self.rdns.iter().flatten()
    }

    /// Whether the DN has no attribute at all.
    pub fn is_empty(&self) -> bool {
        self.rdns.is_empty()
    }

    /// Every value of `kind`, most specific first.
    pub fn values<'a>(&'a self, kind: &'a AttributeType) -> impl Iterator<Item = &'a str> + 'a {
        self.attributes()
            .filter(move |a| &a.kind == kind)
            .map(|a| a.value.as_str())
    }

    /// The value of a single-valued attribute: `None` when absent, an
    /// error when it appears more than once (never guess which one).
    pub fn single(&self, kind: &AttributeType) -> Result<Option<&str>, DnError> {
        let mut values = self
            .attributes()
            .filter(|a| a.kind == *kind)
            .map(|a| a.value.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(DnError::Ambiguous(kind.to_string()));
        }
        Ok(first)
    }

    /// Whether every attribute of `pattern` is present here with the same
    /// value (exact, case-sensitive), wherever it sits.
    pub fn contains_all(&self, pattern: &DistinguishedName) -> bool {
        pattern.attributes().all(|p| {
            self.attributes()
                .any(|a| a.kind == p.kind && a.value == p.value)
        })
    }
}

impl fmt::Display for DistinguishedName {
    /// The RFC 4514 string form, special characters escaped.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, rdn) in self.rdns.iter().enumerate() {
            if i > 0 {
                f.write_str(",")?;
            }
            for (j, attr) in rdn.iter().enumerate() {
                if j > 0 {
                    f.write_str("+")?;
                }
                write!(f, "{}=", attr.kind)?;
                if attr.opaque {
                    f.write_str(&attr.value)?;
                } else {
                    write_escaped(f, &attr.value)?;
                }
            }
        }
        Ok(())
    }
}

fn write_escaped(f: &mut fmt::Formatter<'_>, value: &str) -> fmt::Result {
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let escape = matches!(c, '"' | '+' | ',' | ';' | '<' | '>' | '\\')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if escape {
            f.write_str("\\")?;
        }
        write!(f, "{c}")?;
    }
    Ok(())
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
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
    }

    fn dn(mut self) -> Result<DistinguishedName, DnError> {
        let mut rdns: Vec<Vec<Attribute>> = Vec::new();
        let mut count = 0usize;
        self.skip_spaces();
        if self.peek().is_none() {
            return Ok(DistinguishedName::default());
        }
        let mut rdn = Vec::new();
        loop {
            count += 1;
            if count > MAX_ATTRIBUTES {
                return Err(DnError::TooLong);
            }
            rdn.push(self.attribute()?);
            self.skip_spaces();
            match self.peek() {
                None => {
                    rdns.push(rdn);
                    return Ok(DistinguishedName { rdns });
                }
                Some(b'+') => self.pos += 1,
                Some(b',' | b';') => {
                    self.pos += 1;
                    rdns.push(std::mem::take(&mut rdn));
                }
                Some(_) => return Err(DnError::Unexpected(self.pos)),
            }
        }
    }

    fn attribute(&mut self) -> Result<Attribute, DnError> {
        self.skip_spaces();
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
        {
            self.pos += 1;
        }
        let name = std::str::from_utf8(&self.bytes[start..self.pos])
            .map_err(|_| DnError::BadType(start))?;
        let kind = AttributeType::parse(name).ok_or(DnError::BadType(start))?;
        self.skip_spaces();
        if self.peek() != Some(b'=') {
            return Err(DnError::ExpectedEquals(self.pos));
        }
        self.pos += 1;
        self.skip_spaces();
        if self.peek() == Some(b'#') {
            return self.hex_value(kind);
        }
        let value = self.string_value()?;
        if value.chars().any(char::is_control) {
            return Err(DnError::ControlCharacter);
        }
        Ok(Attribute {
            kind,
            value,
            opaque: false,
        })
    }

    /// `#` followed by hex pairs: the BER encoding of the value.
    fn hex_value(&mut self, kind: AttributeType) -> Result<Attribute, DnError> {
        let start = self.pos;
        self.pos += 1;
        let mut der = Vec::new();
        while let Some(hi) = self.peek().and_then(hex_digit) {
            let lo = self
                .bytes
                .get(self.pos + 1)
                .copied()
                .and_then(hex_digit)
                .ok_or(DnError::BadHex(self.pos))?;
            der.push(hi << 4 | lo);
            self.pos += 2;
        }
        if der.is_empty() {
            return Err(DnError::BadHex(start));
        }
        match decode_der_string(&der)? {
            Some(value) => Ok(Attribute {
                kind,
                value,
                opaque: false,
            }),
            None => Ok(Attribute {
                kind,
                value: format!("#{}", hex(&der)),
                opaque: true,
            }),
        }
    }

    /// A string value up to the next unescaped separator, unescaped
    /// leading and trailing spaces dropped.
    fn string_value(&mut self) -> Result<String, DnError> {
        let mut out: Vec<u8> = Vec::new();
        let mut significant = 0usize;
        while let Some(b) = self.peek() {
            match b {
                b',' | b';' | b'+' => break,
                b'"' => return Err(DnError::UnescapedQuote(self.pos)),
                b'\\' => {
                    let at = self.pos;
                    let next = self.bytes.get(at + 1).copied();
                    match next {
                        Some(
                            c @ (b'"' | b'+' | b',' | b';' | b'<' | b'>' | b'\\' | b' ' | b'#'
                            | b'='),
                        ) => {
                            out.push(c);
                            self.pos += 2;
                        }
                        Some(h) if hex_digit(h).is_some() => {
                            let lo = self
                                .bytes
                                .get(at + 2)
                                .copied()
                                .and_then(hex_digit)
                                .ok_or(DnError::BadEscape(at))?;
                            let hi = hex_digit(h).ok_or(DnError::BadEscape(at))?;
                            out.push(hi << 4 | lo);
                            self.pos += 3;
                        }
                        _ => return Err(DnError::BadEscape(at)),
                    }
                    significant = out.len();
                }
                _ => {
                    out.push(b);
                    self.pos += 1;
                    if b != b' ' {
                        significant = out.len();
                    }
                }
            }
        }
        out.truncate(significant);
        String::from_utf8(out).map_err(|_| DnError::NotUtf8)
    }
}

fn hex_digit(b: u8) -> Option<u8> {
    (b as char).to_digit(16).and_then(|d| u8::try_from(d).ok())
}

impl Attribute {
    /// An attribute from a certificate: its OID and DER value (`tag` and
    /// content). Non-string values are kept in `#hex` form, as RFC 4514
    /// renders them.
    pub fn from_der_value(
        oid: &str,
        tag: u32,
        content: &[u8],
        der: &[u8],
    ) -> Result<Self, DnError> {
        let kind = AttributeType::from_oid(oid);
        match decode_string_content(tag, content)? {
            Some(value) => Ok(Attribute {
                kind,
                value,
                opaque: false,
            }),
            None => Ok(Attribute {
                kind,
                value: format!("#{}", hex(der)),
                opaque: true,
            }),
        }
    }
}

mod der;

pub(crate) use der::hex;
use der::{decode_der_string, decode_string_content};

#[cfg(test)]
mod tests;
