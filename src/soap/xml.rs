//! The one XML walk every SOAP parser here uses: namespace-aware (quick-xml's `NsReader`),
//! UTF-8 only, no DTD (a `DOCTYPE` is refused outright, so no entity can be declared: no XXE,
//! no entity expansion), entity and character references decoded, depth bounded. It keeps no
//! tree: each parser is a state machine over the [`Step`]s, and holds only the values it wants.

use quick_xml::events::Event;
use quick_xml::name::{Namespace, ResolveResult};
use quick_xml::NsReader;

pub(crate) const SOAP_ENV: &[u8] = b"http://schemas.xmlsoap.org/soap/envelope/";
pub(crate) const XSI: &[u8] = b"http://www.w3.org/2001/XMLSchema-instance";

/// Deeper than any Salesforce envelope (login is five levels, getUserInfo's answer six).
const MAX_DEPTH: usize = 32;

/// An element's namespace, as far as these parsers care.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ns {
    SoapEnv,
    Partner,
    Enterprise,
    /// Any other namespace.
    Other,
    /// No namespace (no prefix and no default `xmlns`).
    None,
}

/// What the walk meets, in document order.
pub(crate) enum Step<'a> {
    /// An element opens (`<a/>` opens and closes). `nil`: it carries `xsi:nil="true"`.
    Open { ns: Ns, local: &'a [u8], nil: bool },
    /// Character data of the innermost open element (one piece; an element's text may come
    /// in several pieces, split at references and CDATA sections).
    Text(&'a str),
    /// The innermost open element closes.
    Close,
}

/// Why a document was not read: the `reason` of a skipped event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Not UTF-8, not well-formed XML, or an undeclared prefix.
    NotXml,
    /// A `<!DOCTYPE …>`: refused, whatever it declares.
    Doctype,
    /// Nested deeper than [`MAX_DEPTH`].
    TooDeep,
}

impl Malformed {
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Malformed::NotXml => "soap_not_xml",
            Malformed::Doctype => "soap_doctype",
            Malformed::TooDeep => "soap_too_deep",
        }
    }
}

fn classify(resolved: &ResolveResult<'_>) -> Result<Ns, Malformed> {
    Ok(match resolved {
        ResolveResult::Bound(Namespace(ns)) => match *ns {
            SOAP_ENV => Ns::SoapEnv,
            b"urn:partner.soap.sforce.com" => Ns::Partner,
            b"urn:enterprise.soap.sforce.com" => Ns::Enterprise,
            _ => Ns::Other,
        },
        ResolveResult::Unbound => Ns::None,
        ResolveResult::Unknown(_) => return Err(Malformed::NotXml),
    })
}

/// Walks `xml` to its end (or until `visit` fails), calling `visit` with the depth of the
/// element concerned (the root is 1) and the step. The whole document must be well-formed.
pub(crate) fn walk<E: From<Malformed>>(
    xml: &[u8],
    mut visit: impl FnMut(usize, Step<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let text = std::str::from_utf8(xml).map_err(|_| Malformed::NotXml)?;
    let mut reader = NsReader::from_str(text);
    let config = reader.config_mut();
    config.expand_empty_elements = true;
    config.check_end_names = true;
    let mut depth = 0usize;
    let mut seen_root = false;
    loop {
        let (resolved, event) = reader
            .read_resolved_event()
            .map_err(|_| Malformed::NotXml)?;
        let ns = classify(&resolved);
        match event {
            Event::Start(start) => {
                let ns = ns?;
                if depth == 0 && seen_root {
                    return Err(Malformed::NotXml.into());
                }
                seen_root = true;
                depth += 1;
                if depth > MAX_DEPTH {
                    return Err(Malformed::TooDeep.into());
                }
                let mut nil = false;
                for attr in start.attributes() {
                    let attr = attr.map_err(|_| Malformed::NotXml)?;
                    let (attr_ns, local) = reader.resolve_attribute(attr.key);
                    if matches!(attr_ns, ResolveResult::Bound(Namespace(XSI)))
                        && local.as_ref() == b"nil"
                    {
                        nil = matches!(attr.value.as_ref(), b"true" | b"1");
                    }
                }
                visit(
                    depth,
                    Step::Open {
                        ns,
                        local: start.local_name().into_inner(),
                        nil,
                    },
                )?;
            }
            Event::End(_) => {
                visit(depth, Step::Close)?;
                depth -= 1;
            }
            Event::Text(t) => {
                let t = t.xml_content().map_err(|_| Malformed::NotXml)?;
                if depth == 0 {
                    if !t.trim().is_empty() {
                        return Err(Malformed::NotXml.into());
                    }
                } else {
                    visit(depth, Step::Text(&t))?;
                }
            }
            Event::CData(t) => {
                if depth == 0 {
                    return Err(Malformed::NotXml.into());
                }
                let t = t.decode().map_err(|_| Malformed::NotXml)?;
                visit(depth, Step::Text(&t))?;
            }
            Event::GeneralRef(r) => {
                if depth == 0 {
                    return Err(Malformed::NotXml.into());
                }
                let mut utf8 = [0u8; 4];
                let piece: &str = match r.resolve_char_ref() {
                    Ok(Some(c)) => c.encode_utf8(&mut utf8),
                    Ok(None) => {
                        let name = r.decode().map_err(|_| Malformed::NotXml)?;
                        // Only the five predefined entities exist: there is no DTD.
                        quick_xml::escape::resolve_predefined_entity(&name)
                            .ok_or(Malformed::NotXml)?
                    }
                    Err(_) => return Err(Malformed::NotXml.into()),
                };
                visit(depth, Step::Text(piece))?;
            }
            Event::DocType(_) => return Err(Malformed::Doctype.into()),
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) => {}
            Event::Empty(_) => unreachable!("expand_empty_elements is on"),
            Event::Eof => {
                if depth != 0 || !seen_root {
                    return Err(Malformed::NotXml.into());
                }
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn steps(xml: &str) -> Result<Vec<String>, Malformed> {
        let mut out = Vec::new();
        walk(xml.as_bytes(), |depth, step| {
            out.push(match step {
                Step::Open { ns, local, nil } => format!(
                    "{depth}<{ns:?}:{}{}",
                    String::from_utf8_lossy(local),
                    if nil { " nil" } else { "" }
                ),
                Step::Text(t) => format!("{depth}'{t}'"),
                Step::Close => format!("{depth}>"),
            });
            Ok::<_, Malformed>(())
        })?;
        Ok(out)
    }

    #[test]
    fn references_and_cdata_are_text() {
        let got = steps("<a>x&amp;&#65;&#x42;<![CDATA[<&>]]>&lt;</a>").unwrap();
        assert_eq!(got.concat(), "1<None:a1'x'1'&'1'A'1'B'1'<&>'1'<'1>");
    }

    #[test]
    fn doctype_and_unknown_entities_are_refused() {
        let bomb = r#"<!DOCTYPE l [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;">]><l>&b;</l>"#;
        assert_eq!(steps(bomb), Err(Malformed::Doctype));
        let xxe = r#"<?xml version="1.0"?><!DOCTYPE x SYSTEM "file:///etc/passwd"><x/>"#;
        assert_eq!(steps(xxe), Err(Malformed::Doctype));
        assert_eq!(steps("<a>&nbsp;</a>"), Err(Malformed::NotXml));
    }

    #[test]
    fn ill_formed_documents_are_not_xml() {
        for bad in [
            "",
            "   ",
            "<a>",
            "<a></b>",
            "<a/><b/>",
            "text<a/>",
            "<p:a/>",
            "<a>&#0;</a>",
            "<a x='1' x='2'/>",
        ] {
            assert_eq!(steps(bad), Err(Malformed::NotXml), "{bad:?}");
        }
        assert_eq!(
            walk(b"<a>\xff</a>", |_, _| Ok::<_, Malformed>(())),
            Err(Malformed::NotXml)
        );
    }

    #[test]
    fn depth_is_bounded() {
        let deep = "<a>".repeat(MAX_DEPTH + 1) + &"</a>".repeat(MAX_DEPTH + 1);
        assert_eq!(steps(&deep), Err(Malformed::TooDeep));
        let ok = "<a>".repeat(MAX_DEPTH) + &"</a>".repeat(MAX_DEPTH);
        assert!(steps(&ok).is_ok());
    }

    #[test]
    fn namespaces_and_nil_resolve() {
        let got = steps(concat!(
            r#"<e:E xmlns:e="http://schemas.xmlsoap.org/soap/envelope/" "#,
            r#"xmlns:i="http://www.w3.org/2001/XMLSchema-instance">"#,
            r#"<r xmlns="urn:enterprise.soap.sforce.com" i:nil="true"/><o xmlns="urn:x"/></e:E>"#
        ))
        .unwrap();
        assert_eq!(got.concat(), "1<SoapEnv:E2<Enterprise:r nil2>2<Other:o2>1>");
    }
}
