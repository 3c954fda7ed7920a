use crate::command::Command;
use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

/// Verb → handler. Verbs are matched case-insensitively (stored upper case).
///
/// It also names the server program that serves it (for `HELLO`): `sft-server` and this
/// crate's version unless [`Registry::set_identity`] says otherwise.
#[derive(Default, Clone)]
pub struct Registry {
    /// Verb → (its place among the sorted verbs, its handler).
    handlers: HashMap<String, (usize, Arc<dyn Command>)>,
    identity: Option<(String, String)>,
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `command` under [`Command::verb`], replacing any handler of the same verb.
    pub fn register(&mut self, command: impl Command) -> &mut Self {
        let verb = command.verb().to_ascii_uppercase();
        self.handlers.insert(verb, (0, Arc::new(command)));
        // Registration is rare and the verbs few: number them all again, in sorted order.
        let mut verbs: Vec<String> = self.handlers.keys().cloned().collect();
        verbs.sort_unstable();
        for (index, verb) in verbs.iter().enumerate() {
            if let Some(entry) = self.handlers.get_mut(verb) {
                entry.0 = index;
            }
        }
        self
    }

    /// Names the server program serving these verbs, and its version: a custom server says
    /// who it is, and `HELLO` tells clients.
    pub fn set_identity(
        &mut self,
        name: impl Into<String>,
        version: impl Into<String>,
    ) -> &mut Self {
        self.identity = Some((name.into(), version.into()));
        self
    }

    /// The server program's name (`sft-server` unless set).
    pub fn server_name(&self) -> &str {
        self.identity.as_ref().map_or("sft-server", |(n, _)| n)
    }

    /// The server program's version (this crate's unless set).
    pub fn server_version(&self) -> &str {
        self.identity
            .as_ref()
            .map_or(env!("CARGO_PKG_VERSION"), |(_, v)| v)
    }

    /// The handler for `verb` (any case).
    pub fn get(&self, verb: &str) -> Option<&Arc<dyn Command>> {
        self.get_indexed(verb).map(|(_, command)| command)
    }

    /// The handler for `verb` (any case) with the verb's place in [`Registry::verbs`]: a key
    /// for per-verb tables (metrics) that costs no second lookup.
    pub fn get_indexed(&self, verb: &str) -> Option<(usize, &Arc<dyn Command>)> {
        let entry = if verb.bytes().any(|b| b.is_ascii_lowercase()) {
            self.handlers.get(&verb.to_ascii_uppercase())
        } else {
            self.handlers.get(verb)
        };
        entry.map(|(index, command)| (*index, command))
    }

    /// The registered handlers with their verbs, sorted by verb.
    pub fn commands(&self) -> Vec<(&str, &Arc<dyn Command>)> {
        let mut all: Vec<_> = self
            .handlers
            .iter()
            .map(|(verb, (_, command))| (verb.as_str(), command))
            .collect();
        all.sort_unstable_by_key(|(verb, _)| *verb);
        all
    }

    /// The registered verbs, sorted.
    pub fn verbs(&self) -> Vec<&str> {
        let mut verbs: Vec<&str> = self.handlers.keys().map(String::as_str).collect();
        verbs.sort_unstable();
        verbs
    }
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry")
            .field("verbs", &self.verbs())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn each_verb_is_indexed_by_its_place_among_the_sorted_verbs() {
        let registry = crate::builtins();
        let verbs = registry.verbs();
        assert!(verbs.len() > 5);
        for (i, verb) in verbs.iter().enumerate() {
            assert_eq!(registry.get_indexed(verb).unwrap().0, i, "{verb}");
            let lower = verb.to_ascii_lowercase();
            assert_eq!(registry.get_indexed(&lower).unwrap().0, i, "{lower}");
        }
        assert!(registry.get_indexed("NOPE").is_none());
    }
}
