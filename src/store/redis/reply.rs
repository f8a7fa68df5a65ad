//! The small pieces every Redis call of the store shares: the `EVALSHA`
//! command, the runtime check, times in milliseconds, and reading replies.

use std::fmt;

use ::redis::{Cmd, Script, Value};

use super::MAX_UNIX_SECS;
use crate::store::{ConsumeOutcome, StoreError};

/// `EVALSHA <script's hash> <n> <keys…>`; the caller adds the arguments.
pub(super) fn evalsha(script: &Script, keys: &[&str]) -> Cmd {
    let mut cmd = ::redis::cmd("EVALSHA");
    cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
    cmd
}

/// Tokio timers and the connection manager need a runtime; without one,
/// answer an error instead of panicking.
pub(super) fn in_runtime() -> Result<(), StoreError> {
    match tokio::runtime::Handle::try_current() {
        Ok(_) => Ok(()),
        Err(e) => Err(StoreError::Unavailable(format!(
            "redis: called outside a Tokio runtime: {e}"
        ))),
    }
}

/// Unix seconds → the milliseconds `PXAT`/`PEXPIREAT` take.
pub(super) fn pxat(secs: i64) -> i64 {
    secs.clamp(1, MAX_UNIX_SECS) * 1000
}

pub(super) fn bad_reply(what: &str, reply: impl fmt::Debug) -> StoreError {
    StoreError::Unavailable(format!("redis {what}: unexpected reply {reply:?}"))
}

/// Every text in a reply (one per node of a multi-node reply).
pub(super) fn texts(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::BulkString(bytes) => out.push(String::from_utf8_lossy(bytes).into_owned()),
        Value::SimpleString(text) => out.push(text.clone()),
        Value::VerbatimString { text, .. } => out.push(text.clone()),
        Value::Array(items) | Value::Set(items) => items.iter().for_each(|v| texts(v, out)),
        // Address → reply: only the replies.
        Value::Map(pairs) => pairs.iter().for_each(|(_, v)| texts(v, out)),
        _ => {}
    }
}

pub(super) fn outcome_of(outcome: &str) -> Result<ConsumeOutcome, StoreError> {
    match outcome {
        "first" => Ok(ConsumeOutcome::FirstUse),
        "retried" => Ok(ConsumeOutcome::Retried),
        "replayed" => Ok(ConsumeOutcome::Replayed),
        "revoked" => Ok(ConsumeOutcome::Revoked),
        "lost" => Ok(ConsumeOutcome::StateLost),
        _ => Err(bad_reply("consume", outcome)),
    }
}

/// The `revoked_at` of a revocation entry (`"<revoked_at> <until>"`), if
/// it is still in force at `now`.
pub(super) fn revocation_in_force(what: &str, entry: &str, now: i64) -> Result<Option<i64>, StoreError> {
    let mut parts = entry.split(' ').map(str::parse::<i64>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(revoked_at)), Some(Ok(until)), None) => Ok((until > now).then_some(revoked_at)),
        _ => Err(bad_reply(what, entry)),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use ::redis::{Value, VerbatimFormat};

    use super::{in_runtime, texts};
    use crate::store::StoreError;

    /// Every kind of text a node's reply can hold is read, in order, from
    /// any nesting; a map's keys (node addresses) are not replies.
    #[test]
    fn texts_reads_every_text_of_a_multi_node_reply() {
        let reply = Value::Map(vec![
            (
                Value::SimpleString("10.0.0.1:6379".into()),
                Value::BulkString(b"cluster_state:ok".to_vec()),
            ),
            (
                Value::SimpleString("10.0.0.2:6379".into()),
                Value::Array(vec![
                    Value::SimpleString("simple".into()),
                    Value::VerbatimString {
                        format: VerbatimFormat::Text,
                        text: "verbatim".into(),
                    },
                    Value::Set(vec![Value::BulkString(b"in a set".to_vec())]),
                    Value::Int(7),
                    Value::Nil,
                ]),
            ),
        ]);
        let mut out = Vec::new();
        texts(&reply, &mut out);
        assert_eq!(out, ["cluster_state:ok", "simple", "verbatim", "in a set"]);
    }

    /// Outside a Tokio runtime a call is an error, not a panic.
    #[test]
    fn outside_a_runtime_is_an_error() {
        match in_runtime() {
            Err(StoreError::Unavailable(why)) => assert!(why.contains("outside a Tokio runtime"), "{why}"),
            other => panic!("{other:?}"),
        }
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        assert_eq!(rt.block_on(async { in_runtime() }), Ok(()));
    }
}
