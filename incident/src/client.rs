//! The CLI's side of the API: `driftwatch incident ...` sends one request and prints
//! the answer.

use serde_json::Value;

/// A request that failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Not reachable.
    #[error("cannot reach the incident service at {url}: {source}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        source: reqwest::Error,
    },
    /// The service refused (status and its error body).
    #[error("{status}: {message}")]
    Refused {
        /// HTTP status.
        status: u16,
        /// The error's code.
        code: String,
        /// The error's message.
        message: String,
    },
}

/// A client of one service with one token.
pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

/// A successful answer: JSON, or text (Markdown exports).
pub enum Answer {
    /// JSON.
    Json(Value),
    /// Text.
    Text(String),
}

impl Client {
    /// A client of `base` (e.g. `http://127.0.0.1:9480`).
    pub fn new(base: &str, token: &str) -> Client {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            token: token.to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// Send a request; `body` makes it a POST.
    pub async fn call(&self, path: &str, body: Option<&Value>) -> Result<Answer, ClientError> {
        let url = format!("{}{path}", self.base);
        let req = match body {
            Some(b) => self.http.post(&url).json(b),
            None => self.http.get(&url),
        };
        let resp = req
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| ClientError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = resp.status();
        let is_json = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("application/json"));
        let text = resp
            .text()
            .await
            .map_err(|source| ClientError::Unreachable { url, source })?;
        if !status.is_success() {
            let v: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Err(ClientError::Refused {
                status: status.as_u16(),
                code: v
                    .pointer("/error/code")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    .to_owned(),
                message: v
                    .pointer("/error/message")
                    .and_then(Value::as_str)
                    .map_or(text.clone(), str::to_owned),
            });
        }
        if is_json {
            Ok(Answer::Json(
                serde_json::from_str(&text).unwrap_or(Value::Null),
            ))
        } else {
            Ok(Answer::Text(text))
        }
    }
}
