//! A small streaming walk over AWS Query API XML on quick-xml.
//!
//! The walk reports, for every element, its path of local names (namespace prefixes and the
//! `xmlns` attribute are ignored, so both `http://ec2.amazonaws.com/doc/2016-11-15/` and the
//! variant without the slash work) when it starts, and its text when it ends. Entity and
//! character references are resolved (quick-xml 0.42 reports them as separate events).

use std::fmt;

use quick_xml::events::Event;
use quick_xml::Reader;

/// The XML could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct XmlError {
    /// What went wrong and where (byte offset).
    pub detail: String,
}

impl fmt::Display for XmlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed XML: {}", self.detail)
    }
}

impl std::error::Error for XmlError {}

/// One step of the walk. Paths include the root element.
#[derive(Debug)]
pub enum Step<'a> {
    /// An element opened.
    Start(&'a [&'a str]),
    /// An element closed, with the text directly inside it (entity references resolved).
    End(&'a [&'a str], &'a str),
}

/// Walks `body`, calling `visit` for every element start and end.
pub fn walk(body: &str, mut visit: impl FnMut(Step<'_>)) -> Result<(), XmlError> {
    let mut reader = Reader::from_str(body);
    reader.config_mut().trim_text(false);
    let mut names: Vec<String> = Vec::with_capacity(16);
    let mut text = String::new();
    let err = |reader: &Reader<&[u8]>, e: &dyn fmt::Display| XmlError {
        detail: format!("{e} at byte {}", reader.buffer_position()),
    };
    loop {
        let event = match reader.read_event() {
            Ok(ev) => ev,
            Err(e) => return Err(err(&reader, &e)),
        };
        match event {
            Event::Start(start) => {
                names.push(start.local_name().as_ref().to_string());
                text.clear();
                let path: Vec<&str> = names.iter().map(String::as_str).collect();
                visit(Step::Start(&path));
            }
            Event::Empty(start) => {
                names.push(start.local_name().as_ref().to_string());
                let path: Vec<&str> = names.iter().map(String::as_str).collect();
                visit(Step::Start(&path));
                visit(Step::End(&path, ""));
                names.pop();
                text.clear();
            }
            Event::End(_) => {
                {
                    let path: Vec<&str> = names.iter().map(String::as_str).collect();
                    visit(Step::End(&path, &text));
                }
                names.pop();
                text.clear();
            }
            Event::Text(t) => text.push_str(&t.xml10_content()),
            Event::CData(c) => text.push_str(&c.into_inner()),
            Event::GeneralRef(r) => {
                if let Some(ch) = r.resolve_char_ref().map_err(|e| err(&reader, &e))? {
                    text.push(ch);
                } else {
                    let name = r.xml10_content();
                    match quick_xml::escape::resolve_predefined_entity(&name) {
                        Some(s) => text.push_str(s),
                        None => {
                            return Err(XmlError {
                                detail: format!(
                                    "unknown entity &{name}; at byte {}",
                                    reader.buffer_position()
                                ),
                            })
                        }
                    }
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    if !names.is_empty() {
        return Err(XmlError {
            detail: format!("document ends inside <{}>", names.join("/")),
        });
    }
    Ok(())
}

/// The error part of an AWS error answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// e.g. `RequestLimitExceeded`.
    pub code: String,
    /// Human-readable message.
    pub message: String,
    /// The request id, when present.
    pub request_id: Option<String>,
}

/// Reads an AWS error answer in any of its shapes: `<Response><Errors><Error>` (EC2),
/// `<ErrorResponse><Error>` (STS, IAM) and `<ErrorResponse><Errors><Error>`. Returns `None` when
/// the body is not XML or has no error code.
pub fn parse_error(body: &str) -> Option<ErrorBody> {
    let mut out = ErrorBody::default();
    let walked = walk(body, |step| {
        if let Step::End(path, text) = step {
            let n = path.len();
            if n >= 2 && path[n - 2] == "Error" {
                match path[n - 1] {
                    "Code" if out.code.is_empty() => out.code = text.trim().to_string(),
                    "Message" if out.message.is_empty() => out.message = text.trim().to_string(),
                    _ => {}
                }
            }
            if n == 2 && matches!(path[1], "RequestID" | "RequestId" | "requestId") {
                out.request_id = Some(text.trim().to_string());
            }
        }
    });
    if walked.is_err() || out.code.is_empty() {
        return None;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ec2_error_shape() {
        let body = r#"<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>Request limit exceeded.</Message></Error></Errors><RequestID>5d5f0c40-1</RequestID></Response>"#;
        let e = parse_error(body).unwrap();
        assert_eq!(e.code, "RequestLimitExceeded");
        assert_eq!(e.message, "Request limit exceeded.");
        assert_eq!(e.request_id.as_deref(), Some("5d5f0c40-1"));
    }

    #[test]
    fn reads_both_error_response_shapes_with_namespaces() {
        let sts = r#"<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">
  <Error><Type>Sender</Type><Code>InvalidIdentityToken</Code><Message>bad &amp; expired</Message></Error>
  <RequestId>abc</RequestId></ErrorResponse>"#;
        let e = parse_error(sts).unwrap();
        assert_eq!(
            (e.code.as_str(), e.message.as_str()),
            ("InvalidIdentityToken", "bad & expired")
        );
        assert_eq!(e.request_id.as_deref(), Some("abc"));
        let auth = r#"<?xml version="1.0"?><ErrorResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15"><Errors><Error><Code>AuthFailure</Code><Message>AWS was not able to validate the provided access credentials</Message></Error></Errors><RequestID>r2</RequestID></ErrorResponse>"#;
        let e = parse_error(auth).unwrap();
        assert_eq!(e.code, "AuthFailure");
        assert_eq!(e.request_id.as_deref(), Some("r2"));
    }

    #[test]
    fn html_and_empty_bodies_are_not_errors_with_codes() {
        assert!(parse_error("<html><body>Internal Server Error</body></html>").is_none());
        assert!(parse_error("").is_none());
        assert!(parse_error("not xml at all").is_none());
    }

    #[test]
    fn entities_and_char_refs_are_resolved_and_concatenated() {
        let mut texts = Vec::new();
        walk("<a><b>x &amp; y &#x41;&#66;&lt;</b><c/></a>", |s| {
            if let Step::End(p, t) = s {
                texts.push((p.join("/"), t.to_string()));
            }
        })
        .unwrap();
        assert_eq!(texts[0], ("a/b".to_string(), "x & y AB<".to_string()));
        assert_eq!(texts[1], ("a/c".to_string(), String::new()));
    }

    #[test]
    fn truncated_documents_are_errors() {
        let e = walk("<a><b>text</b>", |_| {}).unwrap_err();
        assert!(
            e.to_string().contains("<a>") || e.to_string().contains("a"),
            "{e}"
        );
        assert!(walk("<a><b></a>", |_| {}).is_err());
    }
}
