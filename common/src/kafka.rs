//! Kafka client defaults shared by the agent's producer and the detector's clients, and
//! the connection security both take: TLS (with a CA, optionally a client certificate)
//! and SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512).
//!
//! Secrets (the SASL password, a client key's password) are read from a file or an
//! environment variable at start-up, never from a command-line flag (visible in `ps`)
//! nor from the pass-through `properties` (which are refused if they carry one).
//! Every file is opened at start-up so a wrong path fails fast, naming the setting.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use rdkafka::config::ClientConfig;
use serde::Deserialize;

/// librdkafka properties that carry a secret: refused in pass-through properties.
pub const SECRET_PROPERTIES: &[&str] = &[
    "sasl.password",
    "sasl.username",
    "ssl.key.password",
    "ssl.keystore.password",
    "ssl.key.pem",
    "sasl.oauthbearer.client.secret",
    "sasl.oauthbearer.config",
];

/// A client configuration: `bootstrap.servers`, the security settings, then the
/// operator's librdkafka properties (which win over any default a caller sets before
/// them).
pub fn client_config(
    brokers: &str,
    security: &ResolvedSecurity,
    properties: &BTreeMap<String, String>,
) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    security.apply(&mut c);
    for (k, v) in properties {
        c.set(k, v);
    }
    c
}

/// Refuse pass-through properties that would carry a secret or fight [`KafkaSecurity`].
pub fn check_properties(
    origin: &str,
    properties: &BTreeMap<String, String>,
) -> Result<(), SecurityError> {
    for key in properties.keys() {
        let k = key.trim();
        if SECRET_PROPERTIES.contains(&k) {
            return Err(SecurityError::InlineSecret {
                origin: origin.to_owned(),
                key: k.to_owned(),
            });
        }
        if k == "security.protocol" || k == "sasl.mechanism" || k == "sasl.mechanisms" {
            return Err(SecurityError::UseSecurity {
                origin: origin.to_owned(),
                key: k.to_owned(),
            });
        }
    }
    Ok(())
}

/// `security.protocol`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SecurityProtocol {
    /// No TLS, no SASL (the default).
    #[default]
    Plaintext,
    /// TLS.
    Ssl,
    /// SASL without TLS (the password crosses the network in clear with PLAIN).
    SaslPlaintext,
    /// SASL over TLS: what managed Kafka (MSK, Confluent Cloud, Strimzi) asks for.
    SaslSsl,
}

impl SecurityProtocol {
    /// librdkafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SecurityProtocol::Plaintext => "plaintext",
            SecurityProtocol::Ssl => "ssl",
            SecurityProtocol::SaslPlaintext => "sasl_plaintext",
            SecurityProtocol::SaslSsl => "sasl_ssl",
        }
    }
    fn tls(self) -> bool {
        matches!(self, SecurityProtocol::Ssl | SecurityProtocol::SaslSsl)
    }
    fn sasl(self) -> bool {
        matches!(
            self,
            SecurityProtocol::SaslPlaintext | SecurityProtocol::SaslSsl
        )
    }
}

impl std::str::FromStr for SecurityProtocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "plaintext" => Ok(SecurityProtocol::Plaintext),
            "ssl" => Ok(SecurityProtocol::Ssl),
            "sasl_plaintext" => Ok(SecurityProtocol::SaslPlaintext),
            "sasl_ssl" => Ok(SecurityProtocol::SaslSsl),
            other => Err(format!(
                "unknown security protocol \"{other}\" (expected plaintext, ssl, sasl_plaintext or sasl_ssl)"
            )),
        }
    }
}

/// `sasl.mechanism`. GSSAPI (Kerberos) and OAUTHBEARER are not built in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum SaslMechanism {
    /// Username and password, sent as they are (use with TLS).
    #[serde(rename = "PLAIN")]
    Plain,
    /// Salted challenge-response, SHA-256.
    #[serde(rename = "SCRAM-SHA-256")]
    ScramSha256,
    /// Salted challenge-response, SHA-512.
    #[serde(rename = "SCRAM-SHA-512")]
    ScramSha512,
}

impl SaslMechanism {
    /// librdkafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl std::str::FromStr for SaslMechanism {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(SaslMechanism::Plain),
            "SCRAM-SHA-256" => Ok(SaslMechanism::ScramSha256),
            "SCRAM-SHA-512" => Ok(SaslMechanism::ScramSha512),
            other => Err(format!(
                "unknown SASL mechanism \"{other}\" (expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512)"
            )),
        }
    }
}

/// SASL credentials. The password comes from exactly one of `password_file` and
/// `password_env`; the username is given, or read from `username_file`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Sasl {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: SaslMechanism,
    /// The username.
    #[serde(default)]
    pub username: Option<String>,
    /// A file holding the username (a mounted Kubernetes secret).
    #[serde(default)]
    pub username_file: Option<PathBuf>,
    /// A file holding the password (trailing newline ignored).
    #[serde(default)]
    pub password_file: Option<PathBuf>,
    /// The name of an environment variable holding the password.
    #[serde(default)]
    pub password_env: Option<String>,
}

/// How a client connects: `[kafka.security]` in the agent's config, `--kafka-security-*`
/// flags (and `DRIFTWATCH_KAFKA_*` variables) for the detector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSecurity {
    /// plaintext (default), ssl, sasl_plaintext or sasl_ssl.
    #[serde(default)]
    pub protocol: SecurityProtocol,
    /// PEM file of the CA(s) that signed the brokers' certificates. Without it the
    /// system's trust store is used (librdkafka's `probe`).
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that authenticate clients by TLS.
    #[serde(default)]
    pub cert_file: Option<PathBuf>,
    /// PEM private key of `cert_file`.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
    /// A file holding the password of an encrypted `key_file`.
    #[serde(default)]
    pub key_password_file: Option<PathBuf>,
    /// SASL credentials; required with sasl_plaintext and sasl_ssl.
    #[serde(default)]
    pub sasl: Option<Sasl>,
}

/// A security setting that cannot work; each names the setting at fault.
#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    /// A secret in pass-through properties.
    #[error("{origin}: \"{key}\" carries a secret; give it by file or environment variable instead (kafka.security.sasl.password_file / password_env, or the DRIFTWATCH_KAFKA_SASL_* variables)")]
    InlineSecret {
        /// Where the properties came from.
        origin: String,
        /// The property.
        key: String,
    },
    /// A property that the security settings own.
    #[error(
        "{origin}: \"{key}\" is set by the security settings (kafka.security / --kafka-security-protocol, --kafka-sasl-mechanism)"
    )]
    UseSecurity {
        /// Where the properties came from.
        origin: String,
        /// The property.
        key: String,
    },
    /// A file that cannot be read.
    #[error("{setting} \"{path}\": {source}")]
    File {
        /// The setting naming the file.
        setting: &'static str,
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// An environment variable that is not set (or not UTF-8).
    #[error("{setting}: environment variable {name} is not set")]
    Env {
        /// The setting naming the variable.
        setting: &'static str,
        /// The variable.
        name: String,
    },
    /// A secret that is empty.
    #[error("{setting}: the secret is empty")]
    Empty {
        /// The setting.
        setting: &'static str,
    },
    /// Settings that contradict each other.
    #[error("{0}")]
    Inconsistent(String),
}

/// The resolved settings: secrets read, files checked. `Debug` hides the secrets.
#[derive(Clone, Default)]
pub struct ResolvedSecurity {
    props: Vec<(&'static str, String)>,
    secret_keys: Vec<&'static str>,
}

impl fmt::Debug for ResolvedSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut m = f.debug_map();
        for (k, v) in &self.props {
            if self.secret_keys.contains(k) {
                m.entry(k, &"<redacted>");
            } else {
                m.entry(k, v);
            }
        }
        m.finish()
    }
}

impl ResolvedSecurity {
    /// Set the properties on a client configuration.
    pub fn apply(&self, c: &mut ClientConfig) {
        for (k, v) in &self.props {
            c.set(*k, v);
        }
    }
}

fn readable(setting: &'static str, path: &Path) -> Result<String, SecurityError> {
    std::fs::File::open(path)
        .and_then(|f| f.metadata())
        .and_then(|m| {
            if m.is_dir() {
                Err(std::io::Error::other("is a directory"))
            } else {
                Ok(())
            }
        })
        .map_err(|source| SecurityError::File {
            setting,
            path: path.to_owned(),
            source,
        })?;
    Ok(path.display().to_string())
}

fn secret_file(setting: &'static str, path: &Path) -> Result<String, SecurityError> {
    let text = std::fs::read_to_string(path).map_err(|source| SecurityError::File {
        setting,
        path: path.to_owned(),
        source,
    })?;
    let s = text.trim_end_matches(['\n', '\r']).to_owned();
    if s.is_empty() {
        return Err(SecurityError::Empty { setting });
    }
    Ok(s)
}

fn secret_env(setting: &'static str, name: &str) -> Result<String, SecurityError> {
    let v = std::env::var(name).map_err(|_| SecurityError::Env {
        setting,
        name: name.to_owned(),
    })?;
    if v.is_empty() {
        return Err(SecurityError::Empty { setting });
    }
    Ok(v)
}

impl KafkaSecurity {
    /// Check every setting and read every secret (fail fast at start-up).
    pub fn resolve(&self) -> Result<ResolvedSecurity, SecurityError> {
        let p = self.protocol;
        let mut r = ResolvedSecurity::default();
        r.props.push(("security.protocol", p.as_str().to_owned()));
        if !p.tls()
            && (self.ca_file.is_some() || self.cert_file.is_some() || self.key_file.is_some())
        {
            return Err(SecurityError::Inconsistent(format!(
                "kafka.security: ca_file, cert_file and key_file need protocol ssl or sasl_ssl (protocol is {})",
                p.as_str()
            )));
        }
        if p.tls() {
            // A vendored OpenSSL does not know the system's CA directory: probe for it.
            let ca = match &self.ca_file {
                Some(path) => readable("kafka.security.ca_file", path)?,
                None => "probe".to_owned(),
            };
            r.props.push(("ssl.ca.location", ca));
            match (&self.cert_file, &self.key_file) {
                (Some(cert), Some(key)) => {
                    r.props.push((
                        "ssl.certificate.location",
                        readable("kafka.security.cert_file", cert)?,
                    ));
                    r.props.push((
                        "ssl.key.location",
                        readable("kafka.security.key_file", key)?,
                    ));
                }
                (None, None) => {}
                _ => {
                    return Err(SecurityError::Inconsistent(
                        "kafka.security: cert_file and key_file go together".into(),
                    ))
                }
            }
            if let Some(path) = &self.key_password_file {
                if self.key_file.is_none() {
                    return Err(SecurityError::Inconsistent(
                        "kafka.security: key_password_file needs key_file".into(),
                    ));
                }
                r.props.push((
                    "ssl.key.password",
                    secret_file("kafka.security.key_password_file", path)?,
                ));
                r.secret_keys.push("ssl.key.password");
            }
        }
        match (&self.sasl, p.sasl()) {
            (None, true) => {
                return Err(SecurityError::Inconsistent(format!(
                    "kafka.security: protocol {} needs SASL credentials (kafka.security.sasl / --kafka-sasl-mechanism)",
                    p.as_str()
                )))
            }
            (Some(_), false) => {
                return Err(SecurityError::Inconsistent(format!(
                    "kafka.security: SASL credentials need protocol sasl_plaintext or sasl_ssl (protocol is {})",
                    p.as_str()
                )))
            }
            (None, false) => {}
            (Some(s), true) => {
                r.props.push(("sasl.mechanism", s.mechanism.as_str().to_owned()));
                let user = match (&s.username, &s.username_file) {
                    (Some(u), None) if !u.is_empty() => u.clone(),
                    (None, Some(path)) => secret_file("kafka.security.sasl.username_file", path)?,
                    (Some(_), None) => {
                        return Err(SecurityError::Empty {
                            setting: "kafka.security.sasl.username",
                        })
                    }
                    _ => {
                        return Err(SecurityError::Inconsistent(
                            "kafka.security.sasl: give exactly one of username and username_file"
                                .into(),
                        ))
                    }
                };
                let password = match (&s.password_file, &s.password_env) {
                    (Some(path), None) => secret_file("kafka.security.sasl.password_file", path)?,
                    (None, Some(name)) => secret_env("kafka.security.sasl.password_env", name)?,
                    _ => {
                        return Err(SecurityError::Inconsistent(
                            "kafka.security.sasl: give exactly one of password_file and password_env"
                                .into(),
                        ))
                    }
                };
                r.props.push(("sasl.username", user));
                r.props.push(("sasl.password", password));
                r.secret_keys.push("sasl.password");
            }
        }
        Ok(r)
    }
}

/// The features the linked librdkafka was built with (`builtin.features`).
pub fn builtin_features() -> String {
    ClientConfig::new()
        .create_native_config()
        .ok()
        .and_then(|c| c.get("builtin.features").ok())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let p = dir.join(name);
        std::fs::write(&p, text).expect("write");
        p
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("driftwatch-common-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("mkdir");
        d
    }

    fn get<'a>(r: &'a ResolvedSecurity, k: &str) -> Option<&'a str> {
        r.props
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.as_str())
    }

    #[test]
    fn the_linked_librdkafka_speaks_tls_and_every_sasl_mechanism_offered() {
        let f = builtin_features();
        for want in ["ssl", "sasl_plain", "sasl_scram"] {
            assert!(
                f.split(',').any(|x| x == want),
                "librdkafka lacks {want}: {f}"
            );
        }
    }

    #[test]
    fn plaintext_by_default_and_sasl_ssl_resolves_secrets_from_file_and_env() {
        let r = KafkaSecurity::default().resolve().expect("default");
        assert_eq!(get(&r, "security.protocol"), Some("plaintext"));

        let d = tmpdir("sasl");
        let ca = write(&d, "ca.pem", "-----BEGIN CERTIFICATE-----\n");
        let pw = write(&d, "pw", "s3cret\n");
        let sec = KafkaSecurity {
            protocol: SecurityProtocol::SaslSsl,
            ca_file: Some(ca.clone()),
            sasl: Some(Sasl {
                mechanism: SaslMechanism::ScramSha512,
                username: Some("agent".into()),
                username_file: None,
                password_file: Some(pw),
                password_env: None,
            }),
            ..Default::default()
        };
        let r = sec.resolve().expect("resolves");
        assert_eq!(get(&r, "security.protocol"), Some("sasl_ssl"));
        assert_eq!(get(&r, "ssl.ca.location"), Some(ca.to_str().expect("utf8")));
        assert_eq!(get(&r, "sasl.mechanism"), Some("SCRAM-SHA-512"));
        assert_eq!(get(&r, "sasl.password"), Some("s3cret"));
        let shown = format!("{r:?}");
        assert!(
            !shown.contains("s3cret") && shown.contains("<redacted>"),
            "{shown}"
        );

        let var = format!("DRIFTWATCH_TEST_PW_{}", std::process::id());
        std::env::set_var(&var, "from-env");
        let mut by_env = sec.clone();
        if let Some(s) = by_env.sasl.as_mut() {
            s.password_file = None;
            s.password_env = Some(var.clone());
        }
        let r = by_env.resolve().expect("env");
        assert_eq!(get(&r, "sasl.password"), Some("from-env"));
        std::env::remove_var(&var);
        let e = by_env.resolve().expect_err("unset").to_string();
        assert!(e.contains(&var) && e.contains("password_env"), "{e}");
    }

    #[test]
    fn without_a_ca_file_tls_probes_the_system_store() {
        let r = KafkaSecurity {
            protocol: SecurityProtocol::Ssl,
            ..Default::default()
        }
        .resolve()
        .expect("ssl");
        assert_eq!(get(&r, "ssl.ca.location"), Some("probe"));
    }

    #[test]
    fn each_unusable_setting_is_named() {
        let d = tmpdir("bad");
        let empty = write(&d, "empty", "\n");
        let missing = d.join("missing.pem");
        let sasl = |pf: Option<PathBuf>, pe: Option<String>| Sasl {
            mechanism: SaslMechanism::Plain,
            username: Some("u".into()),
            username_file: None,
            password_file: pf,
            password_env: pe,
        };
        let cases: Vec<(KafkaSecurity, &str)> = vec![
            (
                KafkaSecurity {
                    protocol: SecurityProtocol::Ssl,
                    ca_file: Some(missing.clone()),
                    ..Default::default()
                },
                "kafka.security.ca_file",
            ),
            (
                KafkaSecurity {
                    protocol: SecurityProtocol::SaslSsl,
                    ..Default::default()
                },
                "needs SASL credentials",
            ),
            (
                KafkaSecurity {
                    protocol: SecurityProtocol::Plaintext,
                    sasl: Some(sasl(Some(empty.clone()), None)),
                    ..Default::default()
                },
                "need protocol sasl_plaintext or sasl_ssl",
            ),
            (
                KafkaSecurity {
                    protocol: SecurityProtocol::SaslPlaintext,
                    sasl: Some(sasl(Some(empty.clone()), None)),
                    ..Default::default()
                },
                "password_file: the secret is empty",
            ),
            (
                KafkaSecurity {
                    protocol: SecurityProtocol::SaslPlaintext,
                    sasl: Some(sasl(Some(empty.clone()), Some("X".into()))),
                    ..Default::default()
                },
                "exactly one of password_file and password_env",
            ),
            (
                KafkaSecurity {
                    protocol: SecurityProtocol::Ssl,
                    cert_file: Some(empty.clone()),
                    ..Default::default()
                },
                "cert_file and key_file go together",
            ),
            (
                KafkaSecurity {
                    protocol: SecurityProtocol::Plaintext,
                    ca_file: Some(empty),
                    ..Default::default()
                },
                "need protocol ssl or sasl_ssl",
            ),
        ];
        for (sec, want) in cases {
            let e = sec.resolve().expect_err(want).to_string();
            assert!(e.contains(want), "{want:?} not in {e:?}");
        }
    }

    #[test]
    fn secrets_in_pass_through_properties_are_refused() {
        let mut p = BTreeMap::new();
        p.insert("linger.ms".to_owned(), "5".to_owned());
        check_properties("--kafka-property", &p).expect("harmless");
        p.insert("sasl.password".to_owned(), "x".to_owned());
        let e = check_properties("--kafka-property", &p)
            .expect_err("secret")
            .to_string();
        assert!(e.contains("\"sasl.password\" carries a secret"), "{e}");
        let mut p = BTreeMap::new();
        p.insert("security.protocol".to_owned(), "ssl".to_owned());
        let e = check_properties("kafka.properties", &p)
            .expect_err("owned")
            .to_string();
        assert!(e.contains("set by the security settings"), "{e}");
    }
}
