//! CBOR diagnostic notation (RFC 8949 §8, with the EDN `<< >>` form for embedded CBOR).
//!
//! Written here because SUIT nests almost everything in bstr-wrapped CBOR, and a reader needs to
//! see inside those byte strings; general diagnostic printers show them as opaque hex.

use std::fmt::Write as _;

use minicbor::Decoder;
use minicbor::data::Type;

/// Renders one CBOR item (and anything after it) as indented diagnostic notation.
pub(crate) fn render(bytes: &[u8]) -> String {
    let mut out = String::new();
    let mut d = Decoder::new(bytes);
    while d.position() < bytes.len() {
        if item(&mut d, 0, &mut out).is_err() {
            let _ = write!(out, " / undecodable from byte {} /", d.position());
            break;
        }
    }
    out
}

const MAX_DEPTH: usize = 24;

fn indent(out: &mut String, depth: usize) {
    out.push('\n');
    for _ in 0..depth {
        out.push_str("  ");
    }
}

/// Whether `bytes` is exactly one well-formed array, map or tag: shown as `<< >>`.
fn embedded(bytes: &[u8]) -> bool {
    if bytes.len() < 2 || !matches!(bytes.first(), Some(0x80..=0xdb)) {
        return false;
    }
    let mut d = Decoder::new(bytes);
    d.skip().is_ok() && d.position() == bytes.len()
}

fn item(
    d: &mut Decoder<'_>,
    depth: usize,
    out: &mut String,
) -> Result<(), minicbor::decode::Error> {
    if depth > MAX_DEPTH {
        return Err(minicbor::decode::Error::message("too deep"));
    }
    match d.datatype()? {
        Type::Bool => {
            let _ = write!(out, "{}", d.bool()?);
        }
        Type::Null => {
            d.null()?;
            out.push_str("null");
        }
        Type::Undefined => {
            d.undefined()?;
            out.push_str("undefined");
        }
        Type::U8
        | Type::U16
        | Type::U32
        | Type::U64
        | Type::I8
        | Type::I16
        | Type::I32
        | Type::I64
        | Type::Int => {
            let _ = write!(out, "{}", i128::from(d.int()?));
        }
        Type::F16 | Type::F32 | Type::F64 => {
            let _ = write!(out, "{}", d.f64()?);
        }
        Type::Simple => {
            let _ = write!(out, "simple({})", d.simple()?);
        }
        Type::Bytes => {
            let b = d.bytes()?;
            if embedded(b) {
                out.push_str("<< ");
                item(&mut Decoder::new(b), depth, out)?;
                out.push_str(" >>");
            } else {
                let _ = write!(out, "h'{}'", hex::encode(b));
            }
        }
        Type::String => {
            let _ = write!(out, "{:?}", d.str()?);
        }
        Type::Array => {
            let n = d.array()?.unwrap_or(0);
            out.push('[');
            for i in 0..n {
                if n > 2 {
                    indent(out, depth + 1);
                } else if i > 0 {
                    out.push(' ');
                }
                item(d, depth + 1, out)?;
                if i + 1 < n {
                    out.push(',');
                }
            }
            if n > 2 {
                indent(out, depth);
            }
            out.push(']');
        }
        Type::Map => {
            let n = d.map()?.unwrap_or(0);
            out.push('{');
            for i in 0..n {
                indent(out, depth + 1);
                item(d, depth + 1, out)?;
                out.push_str(": ");
                item(d, depth + 1, out)?;
                if i + 1 < n {
                    out.push(',');
                }
            }
            if n > 0 {
                indent(out, depth);
            }
            out.push('}');
        }
        Type::Tag => {
            let _ = write!(out, "{}(", u64::from(d.tag()?));
            item(d, depth, out)?;
            out.push(')');
        }
        other => {
            return Err(minicbor::decode::Error::message(format!(
                "unsupported item {other}"
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_embedded_cbor() {
        // 107({2: << [1] >>})
        let text = render(&[0xd8, 0x6b, 0xa1, 0x02, 0x42, 0x81, 0x01]);
        assert_eq!(text, "107({\n  2: << [1] >>\n})");
    }
}
