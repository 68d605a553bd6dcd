//! Strings kept once, shared by every record that repeats them.

use std::sync::Arc;

use ahash::HashSet;

/// Strings kept once however often they are taken: for the few distinct
/// values (customer ids, SKUs, policy versions, topics) that every
/// document or verdict repeats.
#[derive(Debug, Clone, Default)]
pub struct Interner(HashSet<Arc<str>>);

impl Interner {
    /// The kept copy of `s`, kept now if it is new.
    pub fn get(&mut self, s: &str) -> Arc<str> {
        if let Some(a) = self.0.get(s) {
            return a.clone();
        }
        let a: Arc<str> = Arc::from(s);
        self.0.insert(a.clone());
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_string_taken_twice_is_kept_once() {
        let mut strings = Interner::default();
        let a = strings.get("TENCENT");
        let b = strings.get("TENCENT");
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &strings.get("ALIBABA")));
    }
}
