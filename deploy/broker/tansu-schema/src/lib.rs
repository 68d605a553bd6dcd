//! The part of tansu-schema 0.6.0's interface that tansu-broker and
//! tansu-storage use, for a broker built without a schema registry or a
//! data lake (see Cargo.toml). [`Registry`] and [`lake::House`] have no
//! values, so every path that would validate or store a batch is provably
//! never taken; the compiler checks that, instead of a comment.

use std::{error, fmt};

use tansu_sans_io::{ErrorCode, record::inflated::Batch};

/// What the real crate's operations fail with. Only [`Error::Api`] is
/// matched on by tansu-storage; nothing here can produce either variant.
#[derive(Debug)]
pub enum Error {
    Api(ErrorCode),
    NotBuilt,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Api(code) => write!(f, "schema registry: {code:?}"),
            Self::NotBuilt => f.write_str("this broker is built without a schema registry"),
        }
    }
}

impl error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A schema registry; this build has none, so no value exists.
#[derive(Clone, Debug)]
pub enum Registry {}

impl Registry {
    pub async fn validate(&self, _topic: &str, _batch: &Batch) -> Result<()> {
        match *self {}
    }
}

pub mod lake {
    //! Data-lake sinks; this build has none.

    use tansu_sans_io::{describe_configs_response::DescribeConfigsResult, record::inflated::Batch};

    use crate::Result;

    /// A data lake; this build has none, so no value exists.
    #[derive(Clone, Debug)]
    pub enum House {}

    /// The methods tansu-storage calls on a [`House`].
    pub trait LakeHouse {
        fn store(
            &self,
            topic: &str,
            partition: i32,
            offset: i64,
            inflated: &Batch,
            config: DescribeConfigsResult,
        ) -> impl Future<Output = Result<()>> + Send;

        fn maintain(&self) -> impl Future<Output = Result<()>> + Send;
    }

    impl LakeHouse for House {
        async fn store(
            &self,
            _topic: &str,
            _partition: i32,
            _offset: i64,
            _inflated: &Batch,
            _config: DescribeConfigsResult,
        ) -> Result<()> {
            match *self {}
        }

        async fn maintain(&self) -> Result<()> {
            match *self {}
        }
    }
}
