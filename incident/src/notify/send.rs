//! Delivering notices: SMTP (lettre) and webhooks (reqwest), and the service's notifier
//! loop that claims due notices, sends them and retries with backoff until each is sent.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Duration as Span, Utc};
use lettre::message::header::ContentType;
use lettre::message::Mailbox;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{email_parts, Channel};
use crate::metrics::IncidentMetrics;
use crate::store::{Due, Store};

/// Where e-mail goes out.
#[derive(Debug, Clone)]
pub struct MailConfig {
    /// `smtp://HOST:PORT` (plain), `smtp://HOST:PORT?tls=required` (STARTTLS) or
    /// `smtps://USER:PASSWORD@HOST:PORT` (TLS), as lettre reads them.
    pub smtp_url: String,
    /// The sender, `Name <address>` or `address`.
    pub from: String,
}

/// A bad mail setting.
#[derive(Debug, thiserror::Error)]
pub enum SendConfigError {
    /// The SMTP URL.
    #[error("SMTP URL: {0} (use smtp://HOST:PORT, smtp://HOST:PORT?tls=required or smtps://USER:PASSWORD@HOST:PORT)")]
    Url(String),
    /// The sender address.
    #[error("sender address \"{0}\": {1}")]
    From(String, String),
}

/// The two ways out.
pub struct Senders {
    mail: Option<(AsyncSmtpTransport<Tokio1Executor>, Mailbox)>,
    http: reqwest::Client,
}

/// Longest wait between two attempts at one notice.
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// How long a claimed notice is left to one replica before another may retry it.
const LEASE: Duration = Duration::from_secs(120);

impl Senders {
    /// Build the senders; `mail` None means e-mail notices wait until a server is
    /// configured (they are kept, and counted as pending).
    pub fn new(mail: Option<&MailConfig>) -> Result<Senders, SendConfigError> {
        let mail = match mail {
            None => None,
            Some(m) => {
                let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(&m.smtp_url)
                    .map_err(|e| SendConfigError::Url(e.to_string()))?
                    .timeout(Some(Duration::from_secs(20)))
                    .build();
                let from: Mailbox =
                    m.from.parse().map_err(|e: lettre::address::AddressError| {
                        SendConfigError::From(m.from.clone(), e.to_string())
                    })?;
                Some((transport, from))
            }
        };
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap_or_default();
        Ok(Senders { mail, http })
    }

    /// Whether e-mail can go out.
    pub fn has_mail(&self) -> bool {
        self.mail.is_some()
    }

    /// Send one notice; `Ok` carries the receiver's answer, `Err` says why not.
    pub async fn deliver(&self, n: &Due) -> Result<String, String> {
        match n.channel {
            Channel::Email => {
                let Some((transport, from)) = &self.mail else {
                    return Err("no SMTP server configured (--smtp-url); the notice waits".into());
                };
                let (to, subject, body) =
                    email_parts(&n.payload).ok_or_else(|| "stored e-mail is damaged".to_owned())?;
                let to: Mailbox = to.parse().map_err(|e| format!("recipient \"{to}\": {e}"))?;
                let msg = Message::builder()
                    .from(from.clone())
                    .to(to)
                    .subject(subject)
                    .message_id(Some(format!(
                        "<{}.{}@driftwatch>",
                        n.id,
                        &n.content_hash[..12.min(n.content_hash.len())]
                    )))
                    .header(ContentType::TEXT_PLAIN)
                    .body(body)
                    .map_err(|e| format!("cannot build the e-mail: {e}"))?;
                match transport.send(msg).await {
                    Ok(r) => Ok(format!(
                        "smtp {} {}",
                        r.code(),
                        r.message().collect::<Vec<_>>().join(" ")
                    )),
                    Err(e) if e.is_permanent() => Err(format!("smtp refused (permanent): {e}")),
                    Err(e) => Err(format!("smtp: {e}")),
                }
            }
            Channel::Webhook => {
                let r = self
                    .http
                    .post(&n.destination)
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .header("X-Driftwatch-Notice", &n.id)
                    .header("X-Driftwatch-Content-SHA256", &n.content_hash)
                    .body(n.payload.clone())
                    .send()
                    .await
                    .map_err(|e| format!("webhook: {e}"))?;
                let status = r.status();
                if status.is_success() {
                    Ok(format!("http {}", status.as_u16()))
                } else {
                    Err(format!("webhook answered {status}"))
                }
            }
        }
    }
}

/// The wait before attempt `attempts + 1`: 1 s, 2 s, 4 s, … up to [`MAX_BACKOFF`].
pub fn backoff(attempts: i64) -> Duration {
    let secs = 1u64 << attempts.clamp(0, 16);
    Duration::from_secs(secs).min(MAX_BACKOFF)
}

/// Deliver due notices until `stop`: woken when notices are composed, otherwise when
/// the next retry is due (at least every second).
pub async fn run(
    store: Arc<Store>,
    senders: Senders,
    metrics: IncidentMetrics,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    if !senders.has_mail() {
        tracing::info!("no SMTP server configured: e-mail notices to parties wait in the store until one is (--smtp-url)");
    }
    loop {
        let now = Utc::now();
        match store.notices_due(now, 50).await {
            Ok(due) => {
                for n in due {
                    if *stop.borrow() {
                        return;
                    }
                    attempt(&store, &senders, &metrics, n, now).await;
                }
            }
            Err(e) => {
                metrics.store_errors.with_label_values(&["notice"]).inc();
                tracing::warn!(error = %e, "cannot read the notices due");
            }
        }
        if let Ok((pending, unacked)) = store.notice_counts().await {
            metrics.notices_pending.set(pending);
            metrics.notices_unacknowledged.set(unacked);
        }
        let wait = match store.next_notice_due().await {
            Ok(Some(t)) => (t - Utc::now())
                .to_std()
                .unwrap_or_default()
                .clamp(Duration::from_millis(50), Duration::from_secs(1)),
            _ => Duration::from_secs(1),
        };
        tokio::select! {
            _ = stop.wait_for(|s| *s) => return,
            _ = store.notice_added.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

async fn attempt(
    store: &Store,
    senders: &Senders,
    metrics: &IncidentMetrics,
    n: Due,
    now: DateTime<Utc>,
) {
    let lease = now + Span::from_std(LEASE).unwrap_or_default();
    match store.claim_notice(&n, lease).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            metrics.store_errors.with_label_values(&["notice"]).inc();
            tracing::warn!(error = %e, notice = n.id, "cannot claim a notice");
            return;
        }
    }
    let channel = n.channel.as_str();
    match senders.deliver(&n).await {
        Ok(reference) => {
            metrics.notices.with_label_values(&[channel, "sent"]).inc();
            tracing::info!(
                notice = n.id,
                incident = n.incident_id,
                channel,
                to = n.destination,
                reference,
                "notice sent to a party"
            );
            if let Err(e) = store.notice_sent(Utc::now(), &n, &reference).await {
                // The lease runs out and it is sent again: the receiver sees the same
                // notice id and content hash.
                metrics.store_errors.with_label_values(&["notice"]).inc();
                tracing::warn!(error = %e, notice = n.id, "sent, but cannot record it; it will be sent again");
            }
        }
        Err(error) => {
            metrics
                .notices
                .with_label_values(&[channel, "failed"])
                .inc();
            let next = Utc::now() + Span::from_std(backoff(n.attempts)).unwrap_or_default();
            tracing::warn!(notice = n.id, incident = n.incident_id, channel, to = n.destination, error, attempts = n.attempts + 1, retry_at = %next, "cannot send a notice to a party yet; retrying");
            if let Err(e) = store.notice_failed(Utc::now(), &n, &error, next).await {
                metrics.store_errors.with_label_values(&["notice"]).inc();
                tracing::warn!(error = %e, notice = n.id, "cannot record a failed notice attempt");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let s: Vec<u64> = (0..12).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(s, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(backoff(-3).as_secs(), 1);
        assert_eq!(backoff(i64::MAX), MAX_BACKOFF);
    }

    #[test]
    fn a_bad_smtp_url_or_sender_is_named() {
        let e = Senders::new(Some(&MailConfig {
            smtp_url: "ftp://mail".into(),
            from: "dw@example.com".into(),
        }))
        .err()
        .expect("refused");
        assert!(e.to_string().starts_with("SMTP URL"), "{e}");
        let e = Senders::new(Some(&MailConfig {
            smtp_url: "smtp://127.0.0.1:25".into(),
            from: "not an address".into(),
        }))
        .err()
        .expect("refused");
        assert!(e.to_string().contains("not an address"), "{e}");
    }
}
