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

    /// [`get`](Self::get), keeping a new string only while fewer than
    /// `max` are kept: where the strings come from outside (a verdict's
    /// policy version, say), so that many distinct ones cannot grow it
    /// without bound. Past it, a new string gets a copy of its own.
    pub fn get_bounded(&mut self, s: &str, max: usize) -> Arc<str> {
        match self.0.get(s) {
            Some(a) => a.clone(),
            None if self.0.len() < max => self.get(s),
            None => Arc::from(s),
        }
    }

    /// Strings kept.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether none is kept.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
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
        // Past the bound, new strings are not kept; kept ones still shared.
        assert!(Arc::ptr_eq(&a, &strings.get_bounded("TENCENT", 2)));
        let c = strings.get_bounded("BYTEDANCE", 2);
        assert!(!Arc::ptr_eq(&c, &strings.get_bounded("BYTEDANCE", 2)));
        assert_eq!(strings.len(), 2);
    }
}
