//! `driftwatch incident ...` and `driftwatch audit verify`: the incident service and the
//! CLI over its API. Kept out of `main.rs` so the detector's commands stay readable.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Subcommand};
use driftwatch_incident::auth::{new_token, Role, Tokens};
use driftwatch_incident::client::{Answer, Client, ClientError};
use driftwatch_incident::notify::send::MailConfig;
use driftwatch_incident::service::{self, IncidentConfig};
use driftwatch_incident::store::Store;
use serde_json::{json, Value};

use driftwatch_detector::plan::Plan;

mod audit;
mod serve;

pub use audit::{audit, AuditCommand};
use serve::serve;
pub use serve::ServeArgs;

const EXIT_CONFIG: u8 = 64;
const EXIT_DATA: u8 = 65;
const EXIT_UNAVAILABLE: u8 = 69;

/// `driftwatch incident ...`
#[derive(Subcommand, Debug)]
pub enum IncidentCommand {
    /// Run the incident service: consume alerts and reports, serve the API.
    Serve(Box<ServeArgs>),
    /// Make a new API token and print the line for the tokens file.
    Token {
        /// The person's name (the actor in the audit trail).
        #[arg(long)]
        name: String,
        /// viewer, operator, approver, deployer or admin.
        #[arg(long)]
        role: String,
        /// When the token stops working (RFC 3339).
        #[arg(long)]
        expires: Option<chrono::DateTime<chrono::Utc>>,
    },
    /// List incidents, newest first.
    List {
        #[command(flatten)]
        api: ApiArgs,
        /// Only this system.
        #[arg(long)]
        system: Option<String>,
        /// Only this state.
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one incident (JSON).
    Show {
        #[command(flatten)]
        api: ApiArgs,
        /// Incident id.
        id: String,
    },
    /// Open an incident by hand (a deployer's token files a deployer report).
    Open {
        #[command(flatten)]
        api: ApiArgs,
        /// The AI system.
        #[arg(long)]
        system: String,
        /// What happened.
        #[arg(long)]
        description: String,
        /// One line.
        #[arg(long)]
        title: Option<String>,
        /// warning or critical (default critical).
        #[arg(long)]
        severity: Option<String>,
        /// person, complaint or authority_request.
        #[arg(long)]
        trigger: Option<String>,
    },
    /// open -> assessed.
    Assess {
        #[command(flatten)]
        api: ApiArgs,
        /// Incident id.
        id: String,
        /// Why (recorded with your name).
        #[arg(long)]
        reason: String,
        /// Findings.
        #[arg(long)]
        assessment: String,
        /// Root cause, if known.
        #[arg(long)]
        root_cause: Option<String>,
        /// non_conformity, art79_risk, serious_incident, formal_non_compliance,
        /// no_non_conformity.
        #[arg(long)]
        classification: Option<String>,
        /// Serious-incident category (starts the Art. 73 clock): death,
        /// serious_harm_to_health, critical_infrastructure, fundamental_rights,
        /// widespread_infringement, property_or_environment.
        #[arg(long)]
        serious: Option<String>,
        /// A requirement breached (repeatable).
        #[arg(long = "requirement")]
        requirements: Vec<String>,
    },
    /// assessed -> action_decided.
    Decide {
        #[command(flatten)]
        api: ApiArgs,
        /// Incident id.
        id: String,
        /// bring_into_conformity, restrict_use, disable, withdraw, recall or continue_use.
        #[arg(long)]
        decision: String,
        /// The rationale.
        #[arg(long)]
        reason: String,
        /// Model versions it applies to (repeatable; default all).
        #[arg(long = "model-version")]
        model_versions: Vec<String>,
        /// With restrict_use: what the system may still do (default: the reason).
        #[arg(long)]
        restriction: Option<String>,
    },
    /// Lift a restriction or disablement: the system's agents report it may serve.
    #[command(alias = "allow")]
    Enable {
        #[command(flatten)]
        api: ApiArgs,
        /// The AI system.
        #[arg(long)]
        system: String,
        /// Why (recorded with your name).
        #[arg(long)]
        reason: String,
        /// The incident it closes out.
        #[arg(long)]
        incident: Option<String>,
    },
    /// action_decided -> parties_informed.
    Inform {
        #[command(flatten)]
        api: ApiArgs,
        /// Incident id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// `KIND:NAME:CHANNEL` or `KIND:NAME:CHANNEL:REFERENCE` (repeatable); none: the
        /// parties the decision's notices reached (refused while a notice is unsent).
        #[arg(long = "party")]
        parties: Vec<String>,
    },
    /// parties_informed -> effectiveness_verified (or back to assessed).
    Verify {
        #[command(flatten)]
        api: ApiArgs,
        /// Incident id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Whether the action worked.
        #[arg(long)]
        effective: bool,
        /// What shows it.
        #[arg(long)]
        evidence: String,
    },
    /// effectiveness_verified -> closed.
    Close {
        #[command(flatten)]
        api: ApiArgs,
        /// Incident id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// closed -> open.
    Reopen {
        #[command(flatten)]
        api: ApiArgs,
        /// Incident id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Classify an incident; a serious-incident category starts the Art. 73 clock.
    Classify {
        #[command(flatten)]
        api: ApiArgs,
        /// Incident id.
        id: String,
        /// Why.
        #[arg(long)]
        reason: String,
        /// non_conformity, art79_risk, serious_incident, formal_non_compliance,
        /// no_non_conformity.
        #[arg(long)]
        classification: Option<String>,
        /// death, serious_harm_to_health, critical_infrastructure, fundamental_rights,
        /// widespread_infringement, property_or_environment.
        #[arg(long)]
        serious: Option<String>,
    },
    /// Add a corrective measure with an owner and a due date (overdue ones alert).
    Task {
        #[command(flatten)]
        api: ApiArgs,
        /// Incident id.
        id: String,
        /// What to do.
        #[arg(long)]
        title: String,
        /// Who.
        #[arg(long)]
        owner: String,
        /// By when (RFC 3339).
        #[arg(long)]
        due: chrono::DateTime<chrono::Utc>,
    },
    /// Mark a corrective measure done or cancelled (or open again).
    TaskState {
        #[command(flatten)]
        api: ApiArgs,
        /// Incident id.
        id: String,
        /// The task's number.
        n: u32,
        /// open, done or cancelled.
        #[arg(long)]
        state: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Record an Art. 73 report submitted to the market surveillance authority.
    Report {
        #[command(flatten)]
        api: ApiArgs,
        /// Incident id.
        id: String,
        /// initial (may be incomplete, Art. 73(5)) or complete.
        #[arg(long)]
        kind: String,
        /// The authority's reference.
        #[arg(long)]
        reference: Option<String>,
    },
    /// Add a note to the timeline.
    Note {
        #[command(flatten)]
        api: ApiArgs,
        /// Incident id.
        id: String,
        /// The note.
        text: String,
    },
    /// The pseudonymous ids of every prediction since the incident's degradation onset
    /// (NDJSON on stdout), read from the events topic: the decisions to re-review.
    Predictions {
        #[command(flatten)]
        api: ApiArgs,
        /// Incident id.
        id: String,
        /// Kafka bootstrap servers.
        #[arg(
            long,
            env = "DRIFTWATCH_KAFKA_BROKERS",
            default_value = "127.0.0.1:9092"
        )]
        brokers: String,
        /// Events topic.
        #[arg(long, env = "DRIFTWATCH_EVENTS_TOPIC", default_value = driftwatch_schema::DEFAULT_EVENTS_TOPIC)]
        events_topic: String,
        /// Start here instead of the onset (RFC 3339).
        #[arg(long)]
        since: Option<chrono::DateTime<chrono::Utc>>,
        /// Stop here (default now).
        #[arg(long)]
        until: Option<chrono::DateTime<chrono::Utc>>,
        #[command(flatten)]
        security: crate::SecurityArgs,
    },
    /// Write an incident as JSON or as a Markdown document to file.
    Export {
        #[command(flatten)]
        api: ApiArgs,
        /// Incident id.
        id: String,
        /// json or markdown.
        #[arg(long, default_value = "markdown")]
        format: String,
    },
}
/// Where the API is and who is calling.
#[derive(Args, Debug)]
pub struct ApiArgs {
    /// The incident service.
    #[arg(
        long,
        env = "DRIFTWATCH_INCIDENT_URL",
        default_value = "http://127.0.0.1:9480"
    )]
    url: String,
    /// File holding your token (or set DRIFTWATCH_TOKEN).
    #[arg(long, env = "DRIFTWATCH_TOKEN_FILE")]
    token_file: Option<PathBuf>,
}

impl ApiArgs {
    fn client(&self) -> Result<Client, String> {
        let token = match &self.token_file {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| format!("--token-file {}: {e}", p.display()))?
                .trim()
                .to_owned(),
            None => std::env::var("DRIFTWATCH_TOKEN")
                .map_err(|_| "no token: set DRIFTWATCH_TOKEN or give --token-file".to_owned())?,
        };
        Ok(Client::new(&self.url, &token))
    }
}

/// Run an `incident` command.
pub async fn incident(cmd: IncidentCommand) -> ExitCode {
    match cmd {
        IncidentCommand::Serve(args) => serve(*args).await,
        IncidentCommand::Token {
            name,
            role,
            expires,
        } => {
            let Some(role) = Role::parse(&role) else {
                return fail(
                    EXIT_CONFIG,
                    format!("--role \"{role}\": use viewer, operator, approver, deployer or admin"),
                );
            };
            let (token, line) = new_token(&name, role, expires);
            // stdout: the token, for its holder; stderr: the line for the tokens file,
            // with a comment the file's parser skips (`2>> tokens` appends both).
            println!("{token}");
            eprintln!(
                "# {name} ({}): the token went to stdout and is stored nowhere else",
                role.as_str()
            );
            eprintln!("{line}");
            ExitCode::SUCCESS
        }
        IncidentCommand::List { api, system, state } => {
            let mut q = Vec::new();
            if let Some(s) = system {
                q.push(format!("system_id={s}"));
            }
            if let Some(s) = state {
                q.push(format!("state={s}"));
            }
            let path = format!("/v1/incidents?{}", q.join("&"));
            call(&api, &path, None, |v| {
                let list = v["incidents"].as_array().cloned().unwrap_or_default();
                println!(
                    "{:<14} {:<22} {:<8} {:<20} {:>6}  {:<24} TITLE",
                    "ID", "STATE", "SEVERITY", "SYSTEM", "ALERTS", "AWARE AT"
                );
                for i in list {
                    println!(
                        "{:<14} {:<22} {:<8} {:<20} {:>6}  {:<24} {}",
                        i["id"].as_str().unwrap_or(""),
                        i["state"].as_str().unwrap_or(""),
                        i["severity"].as_str().unwrap_or(""),
                        i["system_id"].as_str().unwrap_or(""),
                        i["alerts"]["count"].as_u64().unwrap_or(0),
                        i["aware_at"].as_str().unwrap_or(""),
                        i["title"].as_str().unwrap_or("")
                    );
                }
            })
            .await
        }
        IncidentCommand::Show { api, id } => {
            call(&api, &format!("/v1/incidents/{id}"), None, pretty).await
        }
        IncidentCommand::Open {
            api,
            system,
            description,
            title,
            severity,
            trigger,
        } => {
            let body = json!({"system_id": system, "description": description, "title": title, "severity": severity, "trigger": trigger});
            call(&api, "/v1/incidents", Some(strip_nulls(body)), pretty).await
        }
        IncidentCommand::Assess {
            api,
            id,
            reason,
            assessment,
            root_cause,
            classification,
            serious,
            requirements,
        } => {
            let body = json!({"reason": reason, "assessment": assessment, "root_cause": root_cause, "classification": classification, "serious": serious, "requirements_breached": if requirements.is_empty() { None } else { Some(requirements) }});
            call(
                &api,
                &format!("/v1/incidents/{id}/assess"),
                Some(strip_nulls(body)),
                pretty,
            )
            .await
        }
        IncidentCommand::Enable {
            api,
            system,
            reason,
            incident,
        } => {
            let body = json!({"reason": reason, "incident_id": incident});
            call(
                &api,
                &format!("/v1/systems/{system}/enable"),
                Some(strip_nulls(body)),
                pretty,
            )
            .await
        }
        IncidentCommand::Decide {
            api,
            id,
            decision,
            reason,
            model_versions,
            restriction,
        } => {
            let body = json!({"reason": reason, "decision": decision, "restriction": restriction, "model_versions": if model_versions.is_empty() { None } else { Some(model_versions) }});
            call(
                &api,
                &format!("/v1/incidents/{id}/decide"),
                Some(strip_nulls(body)),
                pretty,
            )
            .await
        }
        IncidentCommand::Inform {
            api,
            id,
            reason,
            parties,
        } => {
            let mut list = Vec::new();
            for p in &parties {
                let parts: Vec<&str> = p.splitn(4, ':').collect();
                if parts.len() < 3 {
                    return fail(
                        EXIT_CONFIG,
                        format!("--party \"{p}\": expected KIND:NAME:CHANNEL[:REFERENCE]"),
                    );
                }
                list.push(json!({"kind": parts[0], "name": parts[1], "channel": parts[2], "reference": parts.get(3)}));
            }
            call(
                &api,
                &format!("/v1/incidents/{id}/inform"),
                Some(json!({"reason": reason, "parties": list})),
                pretty,
            )
            .await
        }
        IncidentCommand::Verify {
            api,
            id,
            reason,
            effective,
            evidence,
        } => {
            call(
                &api,
                &format!("/v1/incidents/{id}/verify"),
                Some(json!({"reason": reason, "effective": effective, "evidence": evidence})),
                pretty,
            )
            .await
        }
        IncidentCommand::Close { api, id, reason } => {
            call(
                &api,
                &format!("/v1/incidents/{id}/close"),
                Some(json!({"reason": reason})),
                pretty,
            )
            .await
        }
        IncidentCommand::Reopen { api, id, reason } => {
            call(
                &api,
                &format!("/v1/incidents/{id}/reopen"),
                Some(json!({"reason": reason})),
                pretty,
            )
            .await
        }
        IncidentCommand::Classify {
            api,
            id,
            reason,
            classification,
            serious,
        } => {
            let body =
                json!({"reason": reason, "classification": classification, "serious": serious});
            call(
                &api,
                &format!("/v1/incidents/{id}/classify"),
                Some(strip_nulls(body)),
                pretty,
            )
            .await
        }
        IncidentCommand::Task {
            api,
            id,
            title,
            owner,
            due,
        } => {
            let body = json!({"title": title, "owner": owner, "due": due});
            call(
                &api,
                &format!("/v1/incidents/{id}/tasks"),
                Some(body),
                pretty,
            )
            .await
        }
        IncidentCommand::TaskState {
            api,
            id,
            n,
            state,
            reason,
        } => {
            let body = json!({"state": state, "reason": reason});
            call(
                &api,
                &format!("/v1/incidents/{id}/tasks/{n}"),
                Some(body),
                pretty,
            )
            .await
        }
        IncidentCommand::Report {
            api,
            id,
            kind,
            reference,
        } => {
            let body = json!({"kind": kind, "reference": reference});
            call(
                &api,
                &format!("/v1/incidents/{id}/authority-reports"),
                Some(strip_nulls(body)),
                pretty,
            )
            .await
        }
        IncidentCommand::Note { api, id, text } => {
            call(
                &api,
                &format!("/v1/incidents/{id}/notes"),
                Some(json!({"text": text})),
                pretty,
            )
            .await
        }
        IncidentCommand::Predictions {
            api,
            id,
            brokers,
            events_topic,
            since,
            until,
            security,
        } => {
            let client = match api.client() {
                Ok(c) => c,
                Err(e) => return fail(EXIT_CONFIG, e),
            };
            let inc = match client.call(&format!("/v1/incidents/{id}"), None).await {
                Ok(Answer::Json(v)) => v,
                Ok(Answer::Text(t)) => return fail(1, format!("unexpected answer: {t}")),
                Err(e) => return client_fail(e),
            };
            let from = match since.or_else(|| {
                inc.pointer("/onset/at")
                    .and_then(Value::as_str)
                    .and_then(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
                    .map(|t| t.with_timezone(&chrono::Utc))
            }) {
                Some(t) => t,
                None => {
                    return fail(
                        EXIT_DATA,
                        format!("incident {id} has no onset; give --since"),
                    )
                }
            };
            let system = inc["system_id"].as_str().unwrap_or_default().to_owned();
            let security = match security
                .security()
                .and_then(|s| s.resolve().map_err(|e| e.to_string()))
            {
                Ok(s) => s,
                Err(e) => return fail(EXIT_CONFIG, e),
            };
            let config =
                driftwatch_common::kafka::client_config(&brokers, &security, &BTreeMap::new());
            let until = until.unwrap_or_else(chrono::Utc::now);
            let result = tokio::task::spawn_blocking(move || {
                let stdout = std::io::stdout();
                let mut out = std::io::BufWriter::new(stdout.lock());
                driftwatch_incident::predictions::export_since(
                    &config,
                    &events_topic,
                    &system,
                    from,
                    until,
                    Duration::from_secs(600),
                    &mut out,
                )
            })
            .await;
            match result {
                Ok(Ok(r)) => {
                    eprintln!(
                        "driftwatch: {} predictions of {} since {} ({} other events skipped{})",
                        r.predictions,
                        inc["system_id"].as_str().unwrap_or(""),
                        driftwatch_incident::audit::ts(from),
                        r.skipped,
                        if r.truncated_partitions.is_empty() {
                            String::new()
                        } else {
                            format!(
                                "; partitions {:?} may have lost older events to retention",
                                r.truncated_partitions
                            )
                        }
                    );
                    ExitCode::SUCCESS
                }
                Ok(Err(e)) => fail(EXIT_UNAVAILABLE, e),
                Err(e) => fail(1, e),
            }
        }
        IncidentCommand::Export { api, id, format } => {
            let client = match api.client() {
                Ok(c) => c,
                Err(e) => return fail(EXIT_CONFIG, e),
            };
            match client
                .call(&format!("/v1/incidents/{id}/export?format={format}"), None)
                .await
            {
                Ok(Answer::Text(t)) => {
                    print!("{t}");
                    ExitCode::SUCCESS
                }
                Ok(Answer::Json(v)) => {
                    pretty(v);
                    ExitCode::SUCCESS
                }
                Err(e) => client_fail(e),
            }
        }
    }
}

fn strip_nulls(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(m.into_iter().filter(|(_, v)| !v.is_null()).collect()),
        v => v,
    }
}

fn pretty(v: Value) {
    println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
}

async fn call(
    api: &ApiArgs,
    path: &str,
    body: Option<Value>,
    show: impl FnOnce(Value),
) -> ExitCode {
    let client = match api.client() {
        Ok(c) => c,
        Err(e) => return fail(EXIT_CONFIG, e),
    };
    match client.call(path, body.as_ref()).await {
        Ok(Answer::Json(v)) => {
            show(v);
            ExitCode::SUCCESS
        }
        Ok(Answer::Text(t)) => {
            print!("{t}");
            ExitCode::SUCCESS
        }
        Err(e) => client_fail(e),
    }
}

fn client_fail(e: ClientError) -> ExitCode {
    match e {
        e @ ClientError::Unreachable { .. } => fail(EXIT_UNAVAILABLE, e),
        ClientError::Refused {
            status,
            code,
            message,
        } => {
            eprintln!("driftwatch: refused ({status} {code}): {message}");
            ExitCode::from(if status == 401 || status == 403 {
                77
            } else {
                1
            })
        }
    }
}

fn fail(code: u8, e: impl std::fmt::Display) -> ExitCode {
    eprintln!("driftwatch: {e}");
    ExitCode::from(code)
}
