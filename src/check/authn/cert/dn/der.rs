//! Directory strings in their BER/DER form: `#hex` values of a DN string,
//! and attribute values read from a certificate.

use super::DnError;

/// Lower-case hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// Decodes a DER/BER-encoded directory string (tag, definite length,
/// content) to text: `Some` for the string types, `None` for anything
/// else (kept opaque by the caller); an error for a string that is
/// malformed or holds control characters.
pub(super) fn decode_der_string(der: &[u8]) -> Result<Option<String>, DnError> {
    let (&tag, rest) = der.split_first().ok_or(DnError::BadHex(0))?;
    let (&len0, mut rest) = rest.split_first().ok_or(DnError::BadHex(0))?;
    let len = if len0 < 0x80 {
        usize::from(len0)
    } else {
        let n = usize::from(len0 & 0x7f);
        if n == 0 || n > 2 || rest.len() < n {
            return Ok(None);
        }
        let (len_bytes, after) = rest.split_at(n);
        rest = after;
        len_bytes
            .iter()
            .fold(0usize, |acc, b| acc << 8 | usize::from(*b))
    };
    if rest.len() != len {
        return Ok(None);
    }
    decode_string_content(u32::from(tag), rest)
}

/// Decodes the content octets of a universal string type `tag`; `None`
/// for a tag that is not a string type.
pub(crate) fn decode_string_content(tag: u32, content: &[u8]) -> Result<Option<String>, DnError> {
    let text = match tag {
        // UTF8String, NumericString, PrintableString, IA5String, VisibleString
        12 | 18 | 19 | 22 | 26 => std::str::from_utf8(content)
            .map_err(|_| DnError::NotUtf8)?
            .to_string(),
        // TeletexString: in practice Latin-1.
        20 => content.iter().map(|&b| char::from(b)).collect(),
        // BMPString: UTF-16BE.
        30 => {
            if !content.len().is_multiple_of(2) {
                return Err(DnError::NotUtf8);
            }
            let units: Vec<u16> = content
                .chunks_exact(2)
                .map(|c| u16::from_be_bytes([c[0], c[1]]))
                .collect();
            String::from_utf16(&units).map_err(|_| DnError::NotUtf8)?
        }
        // UniversalString: UTF-32BE.
        28 => {
            if !content.len().is_multiple_of(4) {
                return Err(DnError::NotUtf8);
            }
            content
                .chunks_exact(4)
                .map(|c| char::from_u32(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
                .collect::<Option<String>>()
                .ok_or(DnError::NotUtf8)?
        }
        _ => return Ok(None),
    };
    if text.chars().any(char::is_control) {
        return Err(DnError::ControlCharacter);
    }
    Ok(Some(text))
}
