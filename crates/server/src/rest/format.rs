//! Content negotiation: JSON, CBOR, MessagePack and CSV, by `Accept` / `Content-Type` or
//! by a `.json`, `.cbor`, `.msgpack` or `.csv` suffix on the URL.

use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, CONTENT_TYPE};
use serde_json::Value;

use crate::body;
use crate::error::ApiError;

/// A representation of records on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `application/json`.
    Json,
    /// `application/cbor`.
    Cbor,
    /// `application/x-msgpack`.
    MsgPack,
    /// `text/csv` (responses only).
    Csv,
}

impl Format {
    /// The MIME type sent in `Content-Type`.
    pub(crate) fn mime(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Cbor => "application/cbor",
            Format::MsgPack => "application/x-msgpack",
            Format::Csv => "text/csv",
        }
    }

    /// The format a URL suffix names.
    pub(crate) fn from_suffix(suffix: &str) -> Option<Format> {
        match suffix {
            "json" => Some(Format::Json),
            "cbor" => Some(Format::Cbor),
            "msgpack" => Some(Format::MsgPack),
            "csv" => Some(Format::Csv),
            _ => None,
        }
    }

    fn from_mime(mime: &str) -> Option<Format> {
        let mime = mime.split(';').next().unwrap_or_default().trim();
        match mime {
            "application/json" | "application/*" | "*/*" | "text/json" => Some(Format::Json),
            "application/cbor" => Some(Format::Cbor),
            "application/x-msgpack" | "application/msgpack" | "application/vnd.msgpack" => {
                Some(Format::MsgPack)
            }
            "text/csv" => Some(Format::Csv),
            _ => None,
        }
    }
}

/// The response format: the URL suffix, else the first supported `Accept` type, else JSON.
pub(crate) fn negotiate(headers: &HeaderMap, suffix: Option<Format>) -> Result<Format, ApiError> {
    if let Some(format) = suffix {
        return Ok(format);
    }
    let Some(accept) = headers.get(ACCEPT).and_then(|v| v.to_str().ok()) else {
        return Ok(Format::Json);
    };
    let mut ranked: Vec<(f32, &str)> = accept
        .split(',')
        .map(|part| {
            let mut pieces = part.split(';');
            let mime = pieces.next().unwrap_or_default().trim();
            let q = pieces
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.parse().ok())
                .unwrap_or(1.0);
            (q, mime)
        })
        .collect();
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0));
    ranked
        .iter()
        .filter(|(q, _)| *q > 0.0)
        .find_map(|(_, mime)| Format::from_mime(mime))
        .ok_or_else(|| ApiError::new(
            axum::http::StatusCode::NOT_ACCEPTABLE,
            format!(
                "none of the types in Accept: {accept} is supported (JSON, CBOR, MessagePack, CSV)"
            ),
        ))
}

/// Decodes a request body by its `Content-Type` (JSON when absent).
pub(crate) fn decode(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    let mime = headers.get(CONTENT_TYPE).and_then(|v| v.to_str().ok());
    let format = match mime {
        // curl -d sends JSON as a form; take it for what it is.
        None => Format::Json,
        Some(m)
            if m.starts_with("application/x-www-form-urlencoded")
                || m.starts_with("text/plain") =>
        {
            Format::Json
        }
        Some(m) => Format::from_mime(m).ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported Content-Type: {m}"),
            )
        })?,
    };
    let decoded = match format {
        Format::Json => body::json(body),
        Format::Cbor => body::cbor(body),
        Format::MsgPack => body::msgpack(body),
        Format::Csv => {
            return Err(ApiError::new(
                axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "CSV is supported for responses only",
            ));
        }
    };
    decoded.map_err(|e| e.bad_request(&format!("invalid {} body", format.mime())))
}

/// Encodes one value (CSV: a header and one row, with `columns`).
pub(crate) fn encode(
    format: Format,
    value: &Value,
    columns: &[String],
) -> Result<Vec<u8>, ApiError> {
    let failed = |e: String| {
        ApiError::new(
            axum::http::StatusCode::INTERNAL_SERVER_ERROR,
            format!("encoding the answer as {} failed: {e}", format.mime()),
        )
    };
    match format {
        Format::Json => serde_json::to_vec(value).map_err(|e| failed(e.to_string())),
        Format::Cbor => {
            let mut out = Vec::new();
            ciborium::into_writer(value, &mut out).map_err(|e| failed(e.to_string()))?;
            Ok(out)
        }
        Format::MsgPack => rmp_serde::to_vec_named(value).map_err(|e| failed(e.to_string())),
        Format::Csv => {
            let mut out = csv_header(columns);
            csv_row(value, columns, &mut out);
            Ok(out)
        }
    }
}

/// The CSV header line.
pub(crate) fn csv_header(columns: &[String]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        csv_field(c, &mut out);
    }
    out.extend_from_slice(b"\r\n");
    out
}

/// One CSV row: scalars as text, objects and arrays as JSON, absent and null as empty.
pub(crate) fn csv_row(record: &Value, columns: &[String], out: &mut Vec<u8>) {
    for (i, c) in columns.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        match record.get(c) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => csv_field(s, out),
            Some(other) => csv_field(&other.to_string(), out),
        }
    }
    out.extend_from_slice(b"\r\n");
}

fn csv_field(text: &str, out: &mut Vec<u8>) {
    if text.contains([',', '"', '\n', '\r']) {
        out.push(b'"');
        out.extend_from_slice(text.replace('"', "\"\"").as_bytes());
        out.push(b'"');
    } else {
        out.extend_from_slice(text.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn accept_picks_the_best_supported_type() {
        let mut h = HeaderMap::new();
        h.insert(
            ACCEPT,
            "text/html;q=0.9, application/cbor;q=0.8, text/csv"
                .parse()
                .unwrap(),
        );
        assert_eq!(negotiate(&h, None).unwrap(), Format::Csv);
        assert_eq!(
            negotiate(&h, Some(Format::MsgPack)).unwrap(),
            Format::MsgPack
        );
        h.insert(ACCEPT, "image/png".parse().unwrap());
        assert!(negotiate(&h, None).is_err());
        assert_eq!(negotiate(&HeaderMap::new(), None).unwrap(), Format::Json);
    }

    #[test]
    fn csv_quotes_what_needs_quoting() {
        let columns = vec!["id".to_string(), "name".to_string(), "tags".to_string()];
        let out = encode(
            Format::Csv,
            &json!({"id": 1, "name": "a,\"b\"", "tags": ["x"]}),
            &columns,
        )
        .unwrap();
        let expected = "id,name,tags\r\n1,\"a,\"\"b\"\"\",\"[\"\"x\"\"]\"\r\n";
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }
}
