//! Roles and bearer tokens. Tokens are stored hashed (SHA-256): the token file holds
//! one line per person, `NAME ROLE sha256:HEX [EXPIRES]`, and `driftwatch incident token`
//! makes a new token and prints its line. The same lines can come from an environment
//! variable (separated by newlines or `;`).

use std::collections::HashMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Reads incidents and the audit trail.
    Viewer,
    /// Opens and assesses incidents, informs parties, verifies, keeps tasks.
    Operator,
    /// Decides corrective action, closes and reopens, records authority reports.
    Approver,
    /// A deployer: reports problems (Art. 26(5)); reads nothing.
    Deployer,
    /// Everything.
    Admin,
}

impl Role {
    /// The spelling in token files.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Approver => "approver",
            Role::Deployer => "deployer",
            Role::Admin => "admin",
        }
    }

    /// Parse a role name.
    pub fn parse(s: &str) -> Option<Role> {
        [
            Role::Viewer,
            Role::Operator,
            Role::Approver,
            Role::Deployer,
            Role::Admin,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

/// One person's token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The person's name: the actor in the audit trail.
    pub name: String,
    /// The role.
    pub role: Role,
    /// When the token stops working.
    pub expires: Option<DateTime<Utc>>,
}

/// Why a request is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// No `Authorization: Bearer` header.
    #[error("no bearer token: send `Authorization: Bearer TOKEN`")]
    Missing,
    /// Not a token we know.
    #[error("unknown token")]
    Unknown,
    /// A known token past its expiry.
    #[error("token of {0} expired at {1}")]
    Expired(String, String),
}

/// The tokens, by hash.
#[derive(Debug, Clone, Default)]
pub struct Tokens {
    by_hash: HashMap<String, Principal>,
}

/// A token file or variable that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{source_name} line {line}: {message}")]
pub struct TokenFileError {
    /// The file or variable.
    pub source_name: String,
    /// 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl Tokens {
    /// Parse token lines: `NAME ROLE sha256:HEX [EXPIRES]`; `#` starts a comment.
    pub fn parse(text: &str, source_name: &str) -> Result<Tokens, TokenFileError> {
        let mut by_hash = HashMap::new();
        let lines = text.split(['\n', ';']);
        for (i, raw) in lines.enumerate() {
            let line = raw.split('#').next().unwrap_or("").trim();
            if line.is_empty() {
                continue;
            }
            let err = |message: String| TokenFileError {
                source_name: source_name.to_owned(),
                line: i + 1,
                message,
            };
            let parts: Vec<&str> = line.split_whitespace().collect();
            if !(3..=4).contains(&parts.len()) {
                return Err(err("expected NAME ROLE sha256:HEX [EXPIRES]".into()));
            }
            let role = Role::parse(parts[1]).ok_or_else(|| {
                err(format!(
                    "role \"{}\": use viewer, operator, approver, deployer or admin",
                    parts[1]
                ))
            })?;
            let hash = parts[2]
                .strip_prefix("sha256:")
                .filter(|h| h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()))
                .ok_or_else(|| {
                    err("the third field must be sha256: and 64 hex digits (tokens are stored hashed; `driftwatch incident token` prints the line)".into())
                })?
                .to_ascii_lowercase();
            let expires = match parts.get(3) {
                None => None,
                Some(t) => Some(
                    DateTime::parse_from_rfc3339(t)
                        .map_err(|_| err(format!("expiry \"{t}\" is not an RFC 3339 time")))?
                        .with_timezone(&Utc),
                ),
            };
            if by_hash
                .insert(
                    hash,
                    Principal {
                        name: parts[0].to_owned(),
                        role,
                        expires,
                    },
                )
                .is_some()
            {
                return Err(err("the same token appears twice".into()));
            }
        }
        Ok(Tokens { by_hash })
    }

    /// Read a token file.
    pub fn from_file(path: &Path) -> Result<Tokens, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenFileError {
            source_name: path.display().to_string(),
            line: 0,
            message: e.to_string(),
        })?;
        Tokens::parse(&text, &path.display().to_string())
    }

    /// How many tokens.
    pub fn len(&self) -> usize {
        self.by_hash.len()
    }

    /// No tokens.
    pub fn is_empty(&self) -> bool {
        self.by_hash.is_empty()
    }

    /// Merge another set in.
    pub fn extend(&mut self, other: Tokens) {
        self.by_hash.extend(other.by_hash);
    }

    /// Who sent this `Authorization` header.
    pub fn authenticate(
        &self,
        header: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<&Principal, AuthError> {
        let token = header
            .and_then(|h| h.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::Missing)?;
        let hash = crate::audit::sha256_hex(token.as_bytes());
        let p = self.by_hash.get(&hash).ok_or(AuthError::Unknown)?;
        if let Some(e) = p.expires {
            if e <= now {
                return Err(AuthError::Expired(p.name.clone(), crate::audit::ts(e)));
            }
        }
        Ok(p)
    }
}

/// A new random token and the token-file line for it.
pub fn new_token(name: &str, role: Role, expires: Option<DateTime<Utc>>) -> (String, String) {
    let mut b = [0u8; 24];
    if getrandom::fill(&mut b).is_err() {
        panic!("no operating-system randomness: cannot make a token");
    }
    let token = format!("dwt_{}", crate::audit::hex(&b));
    let line = format!(
        "{name} {} sha256:{}{}",
        role.as_str(),
        crate::audit::sha256_hex(token.as_bytes()),
        expires.map_or(String::new(), |e| format!(" {}", crate::audit::ts(e)))
    );
    (token, line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_parse_and_tokens_authenticate_by_hash() {
        let (t, line) = new_token("alice", Role::Approver, None);
        let (old, old_line) = new_token(
            "bob",
            Role::Viewer,
            Some(
                DateTime::parse_from_rfc3339("2020-01-01T00:00:00Z")
                    .expect("time")
                    .with_timezone(&Utc),
            ),
        );
        let tokens = Tokens::parse(&format!("# people\n{line}\n{old_line}\n"), "t").expect("valid");
        assert!(
            !format!("{line}{old_line}").contains(&t[4..]),
            "the token itself is never stored"
        );
        let now = Utc::now();
        let p = tokens
            .authenticate(Some(&format!("Bearer {t}")), now)
            .expect("alice");
        assert_eq!((p.name.as_str(), p.role), ("alice", Role::Approver));
        assert_eq!(tokens.authenticate(None, now), Err(AuthError::Missing));
        assert_eq!(
            tokens.authenticate(Some("Bearer dwt_nope"), now),
            Err(AuthError::Unknown)
        );
        assert!(matches!(
            tokens.authenticate(Some(&format!("Bearer {old}")), now),
            Err(AuthError::Expired(..))
        ));
    }

    #[test]
    fn a_bad_line_is_named() {
        let e = Tokens::parse("alice approver sha256:abc\n", "tokens.txt").expect_err("short hash");
        assert_eq!(e.line, 1);
        let e = Tokens::parse(&format!("\nbob boss sha256:{}\n", "a".repeat(64)), "t")
            .expect_err("bad role");
        assert_eq!(e.line, 2);
        assert!(e.message.contains("boss"), "{e}");
    }
}
