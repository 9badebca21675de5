//! `driftwatch audit verify`: the chain, the records and the checkpoints, checked
//! straight in the database.

use super::*;

/// `driftwatch audit ...`
#[derive(Subcommand, Debug)]
pub enum AuditCommand {
    /// Check the audit chain, the incident records against it, and checkpoints; name
    /// the first bad entry.
    Verify {
        /// The incident database (`sqlite:PATH` or `postgres://...`).
        #[arg(long, env = "DRIFTWATCH_DATABASE_URL")]
        database: String,
        /// A checkpoint note held elsewhere (repeatable): catches a deleted or rewritten
        /// tail.
        #[arg(long = "checkpoint")]
        checkpoints: Vec<PathBuf>,
        /// The verifier key the checkpoints must be signed with
        /// (`name+hash+key`, logged by the service at start).
        #[arg(long)]
        verifier_key: Option<String>,
    },
}

/// Run an `audit` command.
pub async fn audit(cmd: AuditCommand) -> ExitCode {
    let AuditCommand::Verify {
        database,
        checkpoints,
        verifier_key,
    } = cmd;
    let mut held = Vec::new();
    for p in &checkpoints {
        let note = match std::fs::read_to_string(p) {
            Ok(n) => n,
            Err(e) => return fail(EXIT_CONFIG, format!("--checkpoint {}: {e}", p.display())),
        };
        match driftwatch_incident::audit::parse_checkpoint(&note, verifier_key.as_deref()) {
            Ok(c) => held.push(c),
            Err(e) => return fail(EXIT_DATA, format!("--checkpoint {}: {e}", p.display())),
        }
    }
    let store = match Store::open(&database).await {
        Ok(s) => Arc::new(s),
        Err(e) => return fail(EXIT_UNAVAILABLE, e),
    };
    match store.verify_with(&held, verifier_key.as_deref()).await {
        Ok(v) if v.ok => {
            println!(
                "audit chain ok: {} entries, head {}, {} checkpoint(s) agree; every incident record matches its last entry",
                v.entries, v.head, v.checkpoints
            );
            ExitCode::SUCCESS
        }
        Ok(v) => {
            let p = v.problem.unwrap_or(driftwatch_incident::audit::Problem {
                seq: 0,
                kind: "unknown".into(),
                message: String::new(),
            });
            eprintln!(
                "audit chain BROKEN at entry {} ({}): {}",
                p.seq, p.kind, p.message
            );
            ExitCode::from(EXIT_DATA)
        }
        Err(e) => fail(EXIT_UNAVAILABLE, e),
    }
}
