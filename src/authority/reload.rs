//! What a reload of the clients changes: [`ClientsChange`], by client id.
//!
//! The authority computes it when it swaps the clients
//! ([`Authority::replace_clients`](super::Authority::replace_clients)), and
//! refuses, on the same comparison, a reload that would leave no client
//! where there were some. It names clients by id only: never an API key or
//! its hash.

use std::fmt;

use crate::clients::ClientRegistry;

/// The difference between two client sets, by id, each list sorted.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClientsChange {
    /// Ids only in the new set.
    pub added: Vec<String>,
    /// Ids only in the old set: their API keys stop working.
    pub removed: Vec<String>,
    /// Ids in both whose entry differs (keys, scopes, audiences, origins, …).
    pub changed: Vec<String>,
    /// How many clients are the same in both.
    pub unchanged: usize,
}

impl ClientsChange {
    /// What replacing `old` by `new` changes.
    pub fn between(old: &ClientRegistry, new: &ClientRegistry) -> ClientsChange {
        let mut change = ClientsChange::default();
        for client in new.iter() {
            match old.by_id(&client.id) {
                None => change.added.push(client.id.clone()),
                Some(before) if *before != **client => change.changed.push(client.id.clone()),
                Some(_) => change.unchanged += 1,
            }
        }
        change.removed = old
            .iter()
            .filter(|c| new.by_id(&c.id).is_none())
            .map(|c| c.id.clone())
            .collect();
        change.added.sort_unstable();
        change.removed.sort_unstable();
        change.changed.sort_unstable();
        change
    }

    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

/// One line for the log: `1 added (third), 0 removed, 1 changed (shop), 2 unchanged`.
impl fmt::Display for ClientsChange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let part = |f: &mut fmt::Formatter<'_>, what: &str, ids: &[String]| {
            if ids.is_empty() {
                write!(f, "0 {what}")
            } else {
                write!(f, "{} {what} ({})", ids.len(), ids.join(", "))
            }
        };
        part(f, "added", &self.added)?;
        f.write_str(", ")?;
        part(f, "removed", &self.removed)?;
        f.write_str(", ")?;
        part(f, "changed", &self.changed)?;
        write!(f, ", {} unchanged", self.unchanged)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::clients::Client;

    fn registry(clients: &[Client]) -> ClientRegistry {
        ClientRegistry::from_clients(clients).unwrap()
    }

    #[test]
    fn names_added_removed_and_changed_clients_by_id() {
        let a = Client::new("a", "aud-a");
        let b = Client::new("b", "aud-b");
        let c = Client::new("c", "aud-c");
        let b2 = Client {
            scopes: vec!["chat".into()],
            ..b.clone()
        };
        let change = ClientsChange::between(
            &registry(&[a.clone(), b, c]),
            &registry(&[a, b2, Client::new("d", "x")]),
        );
        assert_eq!(
            change,
            ClientsChange {
                added: vec!["d".into()],
                removed: vec!["c".into()],
                changed: vec!["b".into()],
                unchanged: 1,
            }
        );
        assert_eq!(
            change.to_string(),
            "1 added (d), 1 removed (c), 1 changed (b), 1 unchanged"
        );
        assert!(!change.is_empty());
        let same = ClientsChange::between(&registry(&[Client::new("a", "x")]), &registry(&[Client::new("a", "x")]));
        assert!(same.is_empty());
        assert_eq!(same.to_string(), "0 added, 0 removed, 0 changed, 1 unchanged");
    }

    /// One kind of change alone is a change: `is_empty` needs all three
    /// lists empty, whichever one is not.
    #[test]
    fn one_kind_of_change_alone_is_not_empty() {
        let a = Client::new("a", "x");
        let a2 = Client {
            scopes: vec!["chat".into()],
            ..a.clone()
        };
        let b = Client::new("b", "y");
        for (old, new, shown) in [
            (
                vec![a.clone()],
                vec![a.clone(), b.clone()],
                "1 added (b), 0 removed, 0 changed, 1 unchanged",
            ),
            (
                vec![a.clone(), b],
                vec![a.clone()],
                "0 added, 1 removed (b), 0 changed, 1 unchanged",
            ),
            (vec![a], vec![a2], "0 added, 0 removed, 1 changed (a), 0 unchanged"),
        ] {
            let change = ClientsChange::between(&registry(&old), &registry(&new));
            assert_eq!(change.to_string(), shown);
            assert!(!change.is_empty(), "{shown}");
        }
    }
}
