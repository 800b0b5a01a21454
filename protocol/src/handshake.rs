//! The fixed-size preamble both sides exchange before any frame.

/// `b"TAUM"`: the first four bytes of every connection, in both directions.
pub const MAGIC: [u8; 4] = *b"TAUM";
/// Bumped on any incompatible change of [`crate::Request`] or [`crate::Reply`].
/// Version 2: the daemon answers `Hello` with [`crate::Reply::Welcome`].
/// Version 3: a collector of a job says [`crate::Request::JobHello`].
pub const VERSION: u16 = 3;
/// The oldest version still understood: a daemon answers a peer of a
/// version from here to [`VERSION`] in the peer's version (a version-1
/// collector gets no `Welcome`; versions 1 and 2 never name a job, their
/// requests are a prefix of version 3's); a collector or client wants its
/// own.
pub const MIN_VERSION: u16 = 1;
/// Size of an encoded [`Preamble`].
pub const PREAMBLE_LEN: usize = 8;

/// Who is speaking: the daemon answers every peer with [`Role::Daemon`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// A process that pushes metrics (PMPI shim, tracer, launcher).
    Collector,
    /// A process that only queries (the CLI client).
    Query,
    /// The daemon itself.
    Daemon,
}

impl Role {
    fn to_byte(self) -> u8 {
        match self {
            Role::Collector => 1,
            Role::Query => 2,
            Role::Daemon => 3,
        }
    }

    fn from_byte(b: u8) -> Option<Role> {
        match b {
            1 => Some(Role::Collector),
            2 => Some(Role::Query),
            3 => Some(Role::Daemon),
            _ => None,
        }
    }
}

/// Magic, version and role: `MAGIC | version u16 LE | role u8 | reserved u8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Preamble {
    pub version: u16,
    pub role: Role,
}

/// Why a received preamble was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreambleError {
    /// The first four bytes are not [`MAGIC`]: not a tau_metric_proxy peer.
    BadMagic([u8; 4]),
    /// Same protocol family, another version.
    VersionMismatch { ours: u16, theirs: u16 },
    /// Unknown role byte.
    BadRole(u8),
}

impl std::fmt::Display for PreambleError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PreambleError::BadMagic(m) => {
                write!(f, "bad magic number {m:02x?}: peer does not speak the tau_metric_proxy protocol")
            }
            PreambleError::VersionMismatch { ours, theirs } => write!(
                f,
                "protocol version mismatch: this side speaks version {ours}, the peer speaks version {theirs}"
            ),
            PreambleError::BadRole(r) => write!(f, "unknown peer role {r}"),
        }
    }
}

impl std::error::Error for PreambleError {}

impl Preamble {
    /// A preamble of this build's [`VERSION`].
    pub fn new(role: Role) -> Preamble {
        Preamble { version: VERSION, role }
    }

    pub fn encode(&self) -> [u8; PREAMBLE_LEN] {
        let v = self.version.to_le_bytes();
        [MAGIC[0], MAGIC[1], MAGIC[2], MAGIC[3], v[0], v[1], self.role.to_byte(), 0]
    }

    /// Decodes and checks a peer's preamble against the versions this
    /// build understands ([`MIN_VERSION`] to [`VERSION`]).
    pub fn decode(bytes: &[u8; PREAMBLE_LEN]) -> Result<Preamble, PreambleError> {
        let magic = [bytes[0], bytes[1], bytes[2], bytes[3]];
        if magic != MAGIC {
            return Err(PreambleError::BadMagic(magic));
        }
        let version = u16::from_le_bytes([bytes[4], bytes[5]]);
        if !(MIN_VERSION..=VERSION).contains(&version) {
            return Err(PreambleError::VersionMismatch { ours: VERSION, theirs: version });
        }
        let role = Role::from_byte(bytes[6]).ok_or(PreambleError::BadRole(bytes[6]))?;
        Ok(Preamble { version, role })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for role in [Role::Collector, Role::Query, Role::Daemon] {
            let p = Preamble::new(role);
            assert_eq!(Preamble::decode(&p.encode()), Ok(p));
        }
    }

    #[test]
    fn mismatches_are_named() {
        let mut b = Preamble::new(Role::Query).encode();
        b[4] = 9;
        let err = Preamble::decode(&b).unwrap_err();
        assert_eq!(err, PreambleError::VersionMismatch { ours: VERSION, theirs: 9 });
        assert_eq!(
            err.to_string(),
            format!("protocol version mismatch: this side speaks version {VERSION}, the peer speaks version 9")
        );
        let err = Preamble::decode(b"GET / HT").unwrap_err();
        assert!(matches!(err, PreambleError::BadMagic(_)));
        let mut b = Preamble::new(Role::Query).encode();
        b[6] = 77;
        assert_eq!(Preamble::decode(&b), Err(PreambleError::BadRole(77)));
    }
}
