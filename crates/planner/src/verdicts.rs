//! The verdicts the planner keeps from `forecasts.audit`, per customer:
//! each customer's documents (ids are each customer's own), their newest
//! verdicts, and its newest rejections, every one of them bounded per
//! customer ([`VerdictLimits`]), so that no customer's submissions grow the
//! planner's memory without bound or push another customer's verdicts out.
//!
//! Verdicts are de-duplicated by the stage and source coordinates of the
//! record they judge: a service that crashed and judged a record again adds
//! nothing.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

// Keyed like SipHash, faster on short keys (see forecast-aggregator state).
use ahash::{HashMap, HashSet};

pub use forecast_model::api::{DocumentHistory, Source, VerdictEntry, ViolationEntry};
use forecast_model::{Interner, Outcome, RuleCode, Stage, Verdict};
use serde::Serialize;

/// Default of `--max-rejections-per-customer`: the newest rejections kept
/// per customer (all are counted).
pub const RECENT_REJECTIONS: usize = 1000;

/// Verdicts kept per document for `/v1/documents` (16 revisions of two
/// verdicts each): older ones are counted, not kept, so a document revised
/// without end takes bounded memory; `forecasts.audit` holds them all.
pub const HISTORY_KEPT: usize = 32;

/// Sources of verdicts that name no document remembered, to drop their
/// repeats; the oldest are forgotten past this.
pub const ANONYMOUS_KEPT: usize = 100_000;

/// Distinct policy versions and topics shared between verdicts; past it a
/// verdict keeps a copy of its own (they come from records).
const STRINGS_KEPT: usize = 10_000;

/// How much the planner keeps of each customer's verdicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerdictLimits {
    /// Documents kept per customer; past it, the document given a verdict
    /// least recently is forgotten (its verdicts stay on the audit topic).
    pub documents_per_customer: usize,
    /// Newest rejections kept per customer.
    pub rejections_per_customer: usize,
    /// Customers kept apart; verdicts of customers past it are kept as
    /// nobody's (planners see them, no customer does).
    pub customers: usize,
}

impl VerdictLimits {
    /// What `forecastctl planner` runs with unless told otherwise.
    pub const DEFAULT: Self = Self {
        documents_per_customer: 100_000,
        rejections_per_customer: RECENT_REJECTIONS,
        customers: 1_000,
    };
}

impl Default for VerdictLimits {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// The entry of `v`, its customer `owner`'s id when it is that
/// customer's, its repeated strings (policy version, topic) shared
/// through `strings`.
fn entry(v: Verdict, owner: Option<&Arc<str>>, strings: &mut Interner) -> VerdictEntry {
    let customer_id = match (v.customer_id, owner) {
        (Some(c), Some(o)) if *c == **o => Some(o.clone()),
        (c, _) => c.map(Arc::from),
    };
    VerdictEntry {
        document_id: v.document_id.map(Arc::from),
        revision: v.revision,
        customer_id,
        verdict: v.outcome,
        stage: v.stage,
        codes: v.codes,
        warnings: v.warnings,
        violations: v
            .violations
            .into_iter()
            .map(|x| ViolationEntry {
                code: x.code,
                field: x.field,
                message: x.message,
            })
            .collect(),
        policy_version: strings.get_bounded(&v.policy_version, STRINGS_KEPT),
        screening_version: v
            .screening_version
            .map(|s| strings.get_bounded(&s, STRINGS_KEPT)),
        decided_at: v.decided_at,
        source: v.source.map(|s| Source {
            topic: strings.get_bounded(&s.topic, STRINGS_KEPT),
            partition: s.partition,
            offset: s.offset,
        }),
    }
}

/// A document kept: its history as the API shows it, and when it was
/// last given a verdict (the book's count of verdicts).
#[derive(Debug, Clone)]
struct Kept {
    document: DocumentHistory,
    touched: u64,
}

/// Recent rejections and counts by code.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rejections {
    /// Rejections of all time matching the customer filter, by code.
    pub counts: BTreeMap<&'static str, u64>,
    /// Rejections of all time matching the customer filter.
    pub total: u64,
    /// The newest rejections matching the filters, newest first.
    pub rejections: Vec<VerdictEntry>,
}

/// Filters of the rejections view.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectionFilter {
    pub customer: Option<String>,
    pub code: Option<RuleCode>,
    pub limit: usize,
}

/// What a document lookup without a customer found.
#[derive(Debug, PartialEq, Eq)]
pub enum Found<'a> {
    /// No verdict names the id.
    None,
    /// One customer's document (or nobody's).
    One(&'a DocumentHistory),
    /// The id is several customers' own: these (`None`: nobody), sorted.
    Several(Vec<Option<Arc<str>>>),
}

/// One customer's verdicts.
#[derive(Debug, Default)]
struct Book {
    documents: HashMap<Arc<str>, Kept>,
    /// One entry per document kept, (when it was last known touched, id),
    /// oldest first: eviction takes the front; a front document touched
    /// since goes to the back with its new time instead (second chance),
    /// so the one forgotten is the document given a verdict least recently.
    order: VecDeque<(u64, Arc<str>)>,
    /// The newest rejections, each with when it was taken.
    rejections: VecDeque<(u64, VerdictEntry)>,
    rejected: u64,
    by_code: BTreeMap<&'static str, u64>,
    /// Documents forgotten to keep the bound.
    evicted: u64,
}

impl Book {
    /// Forgets the document given a verdict least recently.
    fn evict_one(&mut self) {
        while let Some((touched, id)) = self.order.pop_front() {
            match self.documents.get(&id) {
                Some(k) if k.touched == touched => {
                    self.documents.remove(&id);
                    self.evicted += 1;
                    return;
                }
                Some(k) => self.order.push_back((k.touched, id)),
                None => {}
            }
        }
    }
}

/// Stage and source (partition, offset, topic) of a verdict.
type AnonymousSource = (Stage, i32, i64, String);

/// The verdicts of `forecasts.audit`, per customer.
///
/// A verdict belongs to the customer it names, unless it says that customer
/// is not registered (`CUSTOMER_UNKNOWN`), names none, or names a customer
/// past [`VerdictLimits::customers`]: then it is nobody's, shown to planners
/// only. Documents are looked up by customer and id.
#[derive(Debug)]
pub struct VerdictBook {
    customers: HashMap<Arc<str>, Book>,
    /// Verdicts that are no customer's.
    nobody: Book,
    limits: VerdictLimits,
    /// Verdicts taken so far: the clock of `touched` and of rejections.
    taken: u64,
    /// Policy versions and topics, kept once.
    strings: Interner,
    seen_anonymous: HashSet<AnonymousSource>,
    anonymous_order: VecDeque<AnonymousSource>,
}

impl Default for VerdictBook {
    fn default() -> Self {
        Self::new(VerdictLimits::DEFAULT)
    }
}

impl VerdictBook {
    /// An empty book keeping at most `limits`.
    pub fn new(limits: VerdictLimits) -> Self {
        Self {
            customers: HashMap::default(),
            nobody: Book::default(),
            limits,
            taken: 0,
            strings: Interner::default(),
            seen_anonymous: HashSet::default(),
            anonymous_order: VecDeque::new(),
        }
    }

    /// Whose verdict `v` is: its customer's id as kept, or `None`.
    fn owner(&self, v: &Verdict) -> Option<Arc<str>> {
        let customer = v.customer_id.as_deref()?;
        if v.codes.contains(&RuleCode::CustomerUnknown) {
            return None;
        }
        match self.customers.get_key_value(customer) {
            Some((kept, _)) => Some(kept.clone()),
            None if self.customers.len() < self.limits.customers => Some(Arc::from(customer)),
            None => None,
        }
    }

    fn book(&self, owner: Option<&str>) -> Option<&Book> {
        match owner {
            Some(c) => self.customers.get(c),
            None => Some(&self.nobody),
        }
    }

    /// Whether a verdict of a record that names no document was taken.
    fn repeat_anonymous(&mut self, v: &Verdict) -> bool {
        let Some(s) = &v.source else {
            return false;
        };
        let source = (v.stage, s.partition, s.offset, s.topic.clone());
        if !self.seen_anonymous.insert(source.clone()) {
            return true;
        }
        self.anonymous_order.push_back(source);
        if self.anonymous_order.len() > ANONYMOUS_KEPT
            && let Some(oldest) = self.anonymous_order.pop_front()
        {
            self.seen_anonymous.remove(&oldest);
        }
        false
    }

    /// Takes a verdict of the audit topic; false when it repeats one taken.
    pub fn on_verdict(&mut self, verdict: Verdict) -> bool {
        let owner = self.owner(&verdict);
        match (&verdict.document_id, &verdict.source) {
            (None, _) => {
                if self.repeat_anonymous(&verdict) {
                    return false;
                }
            }
            (Some(id), Some(s)) => {
                // A record names one document: a repeat is in its history.
                let repeat = self
                    .book(owner.as_deref())
                    .and_then(|b| b.documents.get(id.as_str()))
                    .is_some_and(|k| {
                        k.document.history.iter().any(|e| {
                            e.stage == verdict.stage
                                && e.source.as_ref().is_some_and(|e| {
                                    e.offset == s.offset
                                        && e.partition == s.partition
                                        && *e.topic == *s.topic
                                })
                        })
                    });
                if repeat {
                    return false;
                }
            }
            (Some(_), None) => {}
        }
        self.taken += 1;
        let now = self.taken;
        let entry = entry(verdict, owner.as_ref(), &mut self.strings);
        let limits = self.limits;
        let book = match &owner {
            Some(c) => self.customers.entry(c.clone()).or_default(),
            None => &mut self.nobody,
        };
        if entry.verdict == Outcome::Rejected {
            book.rejected += 1;
            for code in &entry.codes {
                *book.by_code.entry(code.as_str()).or_default() += 1;
            }
            book.rejections.push_back((now, entry.clone()));
            if book.rejections.len() > limits.rejections_per_customer {
                book.rejections.pop_front();
            }
        }
        let Some(id) = entry.document_id.clone() else {
            return true;
        };
        let kept = book.documents.entry(id.clone()).or_insert_with(|| {
            book.order.push_back((now, id.clone()));
            Kept {
                document: DocumentHistory {
                    document_id: id,
                    customer_id: owner,
                    applied_revision: None,
                    screening_hold: false,
                    // Most documents get two verdicts (validator, aggregator).
                    history: Vec::with_capacity(2),
                    earlier_verdicts: 0,
                },
                touched: now,
            }
        });
        kept.touched = now;
        let doc = &mut kept.document;
        match (entry.stage, entry.verdict) {
            (Stage::Sequence, Outcome::Accepted) => {
                doc.applied_revision = doc.applied_revision.max(entry.revision);
                // A new revision is screened afresh (a RESCREEN verdict
                // follows if the list in force holds it).
                doc.screening_hold = false;
            }
            (Stage::Rescreen, outcome) => doc.screening_hold = outcome == Outcome::Rejected,
            _ => {}
        }
        if doc.history.len() == HISTORY_KEPT {
            doc.history.remove(0);
            doc.earlier_verdicts += 1;
        }
        doc.history.push(entry);
        if book.documents.len() > limits.documents_per_customer {
            book.evict_one();
        }
        true
    }

    /// `customer`'s document `id` (`None`: nobody's), if a verdict names it.
    pub fn document(&self, customer: Option<&str>, id: &str) -> Option<&DocumentHistory> {
        self.book(customer)?.documents.get(id).map(|k| &k.document)
    }

    /// The document `id` of whichever customer holds it.
    pub fn find(&self, id: &str) -> Found<'_> {
        let mut found: Vec<&DocumentHistory> = self
            .customers
            .values()
            .chain([&self.nobody])
            .filter_map(|b| b.documents.get(id))
            .map(|k| &k.document)
            .collect();
        match found.len() {
            0 => Found::None,
            1 => Found::One(found.remove(0)),
            _ => {
                let mut owners: Vec<Option<Arc<str>>> =
                    found.iter().map(|d| d.customer_id.clone()).collect();
                owners.sort();
                Found::Several(owners)
            }
        }
    }

    /// Documents kept for `customer` (`None`: nobody's), and how many were
    /// forgotten to keep the bound.
    pub fn documents_kept(&self, customer: Option<&str>) -> (usize, u64) {
        self.book(customer)
            .map_or((0, 0), |b| (b.documents.len(), b.evicted))
    }

    /// Rejections matching `filter`, newest first, at most `filter.limit`.
    pub fn rejections(&self, filter: &RejectionFilter) -> Rejections {
        let books: Vec<&Book> = match filter.customer.as_deref() {
            Some(c) => self.customers.get(c).into_iter().collect(),
            None => self.customers.values().chain([&self.nobody]).collect(),
        };
        let mut counts: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut total = 0;
        for book in &books {
            total += book.rejected;
            for (code, n) in &book.by_code {
                *counts.entry(code).or_default() += n;
            }
        }
        let mut newest: Vec<&(u64, VerdictEntry)> = books
            .iter()
            .flat_map(|b| b.rejections.iter())
            .filter(|(_, r)| filter.code.is_none_or(|c| r.codes.contains(&c)))
            .collect();
        newest.sort_unstable_by_key(|r| std::cmp::Reverse(r.0));
        Rejections {
            counts,
            total,
            rejections: newest
                .into_iter()
                .take(filter.limit)
                .map(|(_, r)| r.clone())
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests;
