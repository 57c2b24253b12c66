//! Errors of the kernel path. Every variant that makes [`crate::KernelPath::open`] fail means
//! "serve these legs in userspace"; the `Display` text is the one log line to print.

/// Why the kernel path could not be opened or a map update failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The crate was built where clang was not found, so no BPF object is embedded.
    #[error("kernel path unavailable: built without clang")]
    BuiltWithoutClang,

    /// clang was found at build time but a BPF program failed to compile (the build printed the
    /// compiler output as cargo warnings).
    #[error("kernel path unavailable: the BPF programs failed to compile at build time (see the cargo build warnings)")]
    BpfCompileFailed,

    /// The process lacks the privileges to load and attach BPF programs.
    #[error("kernel path unavailable: not root / missing {missing} (run as root, or grant CAP_BPF or CAP_SYS_ADMIN, and CAP_NET_ADMIN)")]
    NotPermitted {
        /// The missing capabilities, e.g. `"CAP_BPF, CAP_NET_ADMIN"`.
        missing: String,
    },

    /// A network interface named in the options or in an output does not exist (in this
    /// network namespace).
    #[error("kernel path unavailable: interface {name} does not exist")]
    InterfaceMissing {
        /// The interface name.
        name: String,
    },

    /// The kernel refused to load a program or create its maps (verifier, BTF, limits).
    #[error("kernel path unavailable: loading the {program} program failed: {detail}")]
    Load {
        /// `guard`, `fanout` or `rewrite`.
        program: &'static str,
        /// The whole error chain as one line.
        detail: String,
        /// What aya reported, with the verifier log when there is one.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// Attaching a program to an interface failed (XDP in both native and generic mode, or TC).
    #[error("kernel path unavailable: attaching {program} to {interface} failed: {detail}")]
    Attach {
        /// `guard`, `fanout` or `rewrite`.
        program: &'static str,
        /// The interface, with the hook (`xdp`, `tc ingress`, `tc egress`).
        interface: String,
        /// The whole error chain as one line (aya's top-level message omits the errno).
        detail: String,
        /// What aya reported.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },

    /// A map operation failed.
    #[error("BPF map {map}: {source}")]
    Map {
        /// The map's name in the C program.
        map: &'static str,
        /// What aya reported.
        #[source]
        source: Box<aya::maps::MapError>,
    },

    /// The program this call needs was not enabled in [`crate::Options`].
    #[error("the {0} program is not enabled in this kernel path")]
    NotEnabled(&'static str),

    /// An output or flow description cannot be served by the kernel path.
    #[error("invalid output: {0}")]
    InvalidOutput(String),

    /// A key already has [`crate::maps::MAX_OUTPUTS`] outputs.
    #[error("a fan-out key has at most {max} outputs")]
    TooManyOutputs {
        /// [`crate::maps::MAX_OUTPUTS`].
        max: usize,
    },

    /// Every per-output counter slot is in use.
    #[error("all {0} output counter slots are in use")]
    CountersExhausted(u32),

    /// No such fan-out/rewrite key, or no such output under it.
    #[error("unknown fan-out key or output")]
    Unknown,
}

impl Error {
    /// True for the errors that mean "no kernel path on this machine / this build" rather than a
    /// bad request: the caller should fall back to userspace forwarding.
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            Error::BuiltWithoutClang
                | Error::BpfCompileFailed
                | Error::NotPermitted { .. }
                | Error::InterfaceMissing { .. }
                | Error::Load { .. }
                | Error::Attach { .. }
        )
    }
}

/// Joins an error and its sources into one line: "a: b: c".
pub(crate) fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let next = c.to_string();
        if !s.contains(&next) {
            s.push_str(": ");
            s.push_str(&next);
        }
        cur = c.source();
    }
    s
}

/// `map_err` adapter for a failed operation on map `map`.
pub(crate) fn map_err(map: &'static str) -> impl FnOnce(aya::maps::MapError) -> Error {
    move |source| Error::Map {
        map,
        source: Box::new(source),
    }
}
