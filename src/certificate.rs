//! The server's TLS certificate: reading a PEM certificate and key, generating a self-signed one
//! for this machine, keeping it in the data directory, and its SHA-256 fingerprint.
//!
//! A phone on the LAN can only use the camera on an `https://` page, and it accepts a self-signed
//! certificate only after its user confirmed it. So the generated certificate is written to the
//! data directory on first start and reused at every later start: the phone is asked once.

use std::fmt::Write as _;
use std::fs::{DirBuilder, OpenOptions};
use std::io::Write as _;
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{DnType, ExtendedKeyUsagePurpose, KeyPair, KeyUsagePurpose, SanType};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::sign::CertifiedKey;
use thiserror::Error;
use tracing::{debug, info, warn};

/// File name of the generated certificate (PEM) in the data directory.
pub const GENERATED_CERTIFICATE_FILE: &str = "https-certificate.pem";

/// File name of the generated certificate's private key (PEM, mode 0600) in the data directory.
pub const GENERATED_KEY_FILE: &str = "https-key.pem";

/// How long a generated certificate is valid. Long on purpose: a phone that accepted it should not
/// have to be asked again while the box runs, and no public CA rule applies to a certificate that
/// the user trusts by hand.
const GENERATED_VALIDITY_DAYS: i64 = 10 * 365;

/// Why a certificate could not be read, generated or stored.
#[derive(Debug, Error)]
pub enum CertificateError {
    /// A certificate or key file could not be read.
    #[error("reading {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file held no usable PEM section of the expected kind.
    #[error("{path}: {what}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        what: String,
    },
    /// The private key does not fit the certificate, or is of a kind rustls cannot sign with.
    #[error("{cert} and {key} do not make a usable certificate: {source}")]
    Unusable {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
        /// rustls' reason.
        source: rustls::Error,
    },
    /// Generating the self-signed certificate failed.
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    /// The data directory or a file in it could not be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The directory or file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// No data directory was given and none could be derived from the environment.
    #[error("no data directory: set --data-dir (neither XDG_STATE_HOME nor HOME is set)")]
    NoDataDirectory,
}

/// A certificate chain with its private key, ready for rustls, and where it was read from.
#[derive(Debug, Clone)]
pub struct LoadedCertificate {
    /// The chain and the signing key.
    pub certified: Arc<CertifiedKey>,
    /// SHA-256 fingerprint of the end-entity certificate, see [`fingerprint`].
    pub fingerprint: String,
    /// The certificate file.
    pub cert_path: PathBuf,
    /// The key file.
    pub key_path: PathBuf,
}

/// The names a generated certificate is valid for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SubjectNames {
    /// DNS names (host name, `<host>.local`, `localhost`).
    pub dns: Vec<String>,
    /// IP addresses.
    pub ips: Vec<IpAddr>,
}

impl SubjectNames {
    /// This machine: its host name, the mDNS name `<host>.local` (how a Raspberry Pi is usually
    /// reached), `localhost`, every interface address except IPv6 link-local ones (a browser
    /// cannot put those in a URL with their zone), and the loopback addresses.
    pub fn of_this_machine() -> SubjectNames {
        let mut dns = Vec::new();
        if let Some(host) = host_name() {
            if !host.contains('.') {
                dns.push(format!("{host}.local"));
            }
            dns.push(host);
        }
        dns.push("localhost".to_string());
        let mut ips = crate::net::interface_ips();
        ips.retain(|ip| match ip {
            IpAddr::V4(v4) => !v4.is_unspecified(),
            IpAddr::V6(v6) => !v6.is_unspecified() && !v6.is_unicast_link_local(),
        });
        ips.push(IpAddr::from([127, 0, 0, 1]));
        ips.push(IpAddr::from(std::net::Ipv6Addr::LOCALHOST));
        ips.sort();
        ips.dedup();
        dns.dedup();
        SubjectNames { dns, ips }
    }
}

/// The machine's host name, as `uname -n` shows it.
fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty() && name != "(none)").then(|| name.to_string())
}

/// The default data directory: `$XDG_STATE_HOME/edge-sfu`, else `~/.local/state/edge-sfu`.
pub fn default_data_dir() -> Result<PathBuf, CertificateError> {
    // The XDG base directory spec says relative values are to be ignored.
    if let Some(state) = std::env::var_os("XDG_STATE_HOME").map(PathBuf::from) {
        if state.is_absolute() {
            return Ok(state.join("edge-sfu"));
        }
    }
    match std::env::var_os("HOME").map(PathBuf::from) {
        Some(home) if home.is_absolute() => Ok(home.join(".local/state/edge-sfu")),
        _ => Err(CertificateError::NoDataDirectory),
    }
}

/// SHA-256 of a DER certificate as colon-separated upper-case hex, the way browsers show it
/// (`AB:CD:...`), so that the one in the log can be compared with the one a phone shows.
pub fn fingerprint(der: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der);
    let mut out = String::with_capacity(digest.as_ref().len() * 3);
    for (i, byte) in digest.as_ref().iter().enumerate() {
        if i > 0 {
            out.push(':');
        }
        let _ = write!(out, "{byte:02X}");
    }
    out
}

/// Reads a PEM certificate chain (end-entity first) and its PEM private key (PKCS#8, PKCS#1 or
/// SEC1) and checks that they belong together.
pub fn load_pem_files(
    cert_path: &Path,
    key_path: &Path,
    provider: &CryptoProvider,
) -> Result<LoadedCertificate, CertificateError> {
    let cert_pem = std::fs::read(cert_path).map_err(|source| CertificateError::Read {
        path: cert_path.to_path_buf(),
        source,
    })?;
    let key_pem = std::fs::read(key_path).map_err(|source| CertificateError::Read {
        path: key_path.to_path_buf(),
        source,
    })?;
    let chain = CertificateDer::pem_slice_iter(&cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertificateError::Pem {
            path: cert_path.to_path_buf(),
            what: format!("bad PEM: {e}"),
        })?;
    let Some(end_entity) = chain.first() else {
        return Err(CertificateError::Pem {
            path: cert_path.to_path_buf(),
            what: "no CERTIFICATE section".into(),
        });
    };
    let fingerprint = fingerprint(end_entity.as_ref());
    let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|e| CertificateError::Pem {
        path: key_path.to_path_buf(),
        what: format!("no usable PRIVATE KEY section: {e}"),
    })?;
    // from_der also compares the key's public half with the certificate's: a certificate and
    // key from two different renewals fail here, at load time, not in every handshake.
    let certified = CertifiedKey::from_der(chain, key, provider).map_err(|source| {
        CertificateError::Unusable {
            cert: cert_path.to_path_buf(),
            key: key_path.to_path_buf(),
            source,
        }
    })?;
    Ok(LoadedCertificate {
        certified: Arc::new(certified),
        fingerprint,
        cert_path: cert_path.to_path_buf(),
        key_path: key_path.to_path_buf(),
    })
}

/// A new self-signed certificate for `names`: its PEM and its key's PEM.
#[derive(Debug, Clone)]
pub struct GeneratedPem {
    /// The certificate.
    pub cert: String,
    /// The PKCS#8 private key.
    pub key: String,
}

/// Generates a self-signed ECDSA P-256 server certificate for `names`.
pub fn generate_self_signed(names: &SubjectNames) -> Result<GeneratedPem, CertificateError> {
    let mut params = rcgen::CertificateParams::default();
    for name in &names.dns {
        // A host name that is not a valid IA5 DNS name (rare) is left out rather than failing.
        match name.clone().try_into() {
            Ok(dns) => params.subject_alt_names.push(SanType::DnsName(dns)),
            Err(e) => debug!(%name, "left out of the certificate: {e}"),
        }
    }
    params
        .subject_alt_names
        .extend(names.ips.iter().copied().map(SanType::IpAddress));
    let label = names
        .dns
        .iter()
        .find(|n| *n != "localhost" && !n.ends_with(".local"))
        .map_or_else(|| "edge-sfu".to_string(), |h| format!("edge-sfu on {h}"));
    params.distinguished_name = rcgen::DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, label);
    params
        .distinguished_name
        .push(DnType::OrganizationName, "edge-sfu (self-signed)");
    // A day of slack before now: a box whose clock is a little behind the phone's still works.
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(GENERATED_VALIDITY_DAYS);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok(GeneratedPem {
        cert: cert.pem(),
        key: key.serialize_pem(),
    })
}

/// The generated certificate in `data_dir`: the stored one when both files are there and make a
/// usable certificate, else a new one for `names`, written there first (directory 0700, key
/// 0600). Logs why it generates.
pub fn load_or_generate(
    data_dir: &Path,
    names: &SubjectNames,
    provider: &CryptoProvider,
) -> Result<LoadedCertificate, CertificateError> {
    let cert_path = data_dir.join(GENERATED_CERTIFICATE_FILE);
    let key_path = data_dir.join(GENERATED_KEY_FILE);
    match load_pem_files(&cert_path, &key_path, provider) {
        Ok(loaded) => {
            debug!(path = %cert_path.display(), "reusing the stored certificate");
            // Kept on purpose (a new one would make every phone ask again), but a browser reaching
            // the box by a name or address the certificate lacks also reports a name mismatch.
            let missing = names_missing_from(&loaded.certified, names);
            if !missing.is_empty() {
                warn!(
                    path = %cert_path.display(),
                    ?missing,
                    "the stored certificate does not name these (address or host name changed?): \
                     browsers using them also report a name mismatch; delete the certificate to \
                     generate a new one"
                );
            }
            return Ok(loaded);
        }
        Err(CertificateError::Read { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound
                && !cert_path.exists()
                && !key_path.exists() =>
        {
            info!(dir = %data_dir.display(), "no certificate stored yet: generating a self-signed one");
        }
        Err(e) => warn!("the stored certificate is unusable, generating a new one: {e}"),
    }
    let pem = generate_self_signed(names)?;
    create_private_dir(data_dir)?;
    // The key first: a crash between the two leaves a pair that does not match, which the next
    // start detects and replaces, never a certificate whose key is lost.
    write_atomically(&key_path, pem.key.as_bytes(), 0o600)?;
    write_atomically(&cert_path, pem.cert.as_bytes(), 0o644)?;
    info!(
        path = %cert_path.display(),
        dns = ?names.dns,
        ips = ?names.ips,
        "generated a self-signed certificate"
    );
    load_pem_files(&cert_path, &key_path, provider)
}

/// The names and addresses in `names` that the end-entity certificate of `certified` is not
/// valid for (all of them if it cannot be parsed).
pub fn names_missing_from(certified: &CertifiedKey, names: &SubjectNames) -> Vec<String> {
    let Some(Ok(cert)) = certified.cert.first().map(webpki::EndEntityCert::try_from) else {
        return names
            .dns
            .iter()
            .cloned()
            .chain(names.ips.iter().map(IpAddr::to_string))
            .collect();
    };
    let mut missing = Vec::new();
    for dns in &names.dns {
        let covered = ServerName::try_from(dns.as_str())
            .is_ok_and(|name| cert.verify_is_valid_for_subject_name(&name).is_ok());
        if !covered {
            missing.push(dns.clone());
        }
    }
    for ip in &names.ips {
        let name = ServerName::IpAddress((*ip).into());
        if cert.verify_is_valid_for_subject_name(&name).is_err() {
            missing.push(ip.to_string());
        }
    }
    missing
}

/// Creates `dir` (and missing parents) readable by its owner only.
fn create_private_dir(dir: &Path) -> Result<(), CertificateError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|source| CertificateError::Write {
            path: dir.to_path_buf(),
            source,
        })
}

/// Writes `bytes` to a temporary file created with `mode` next to `path`, then renames it over
/// `path`: readers never see half a file, and the key is never readable by others, not even
/// for a moment.
fn write_atomically(path: &Path, bytes: &[u8], mode: u32) -> Result<(), CertificateError> {
    let err = |source| CertificateError::Write {
        path: path.to_path_buf(),
        source,
    };
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = PathBuf::from(tmp_name);
    // A leftover from a crash may have another mode; `mode` only applies to a file being created.
    match std::fs::remove_file(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(err(e)),
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn provider() -> CryptoProvider {
        rustls::crypto::aws_lc_rs::default_provider()
    }

    fn temp_dir(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "edge-sfu-cert-{tag}-{}-{:?}",
            std::process::id(),
            std::time::SystemTime::now()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn names() -> SubjectNames {
        SubjectNames {
            dns: vec!["box".into(), "localhost".into()],
            ips: vec!["127.0.0.1".parse().unwrap(), "192.0.2.7".parse().unwrap()],
        }
    }

    #[test]
    fn fingerprints_are_colon_separated_upper_case_sha256() {
        let f = fingerprint(b"abc");
        assert_eq!(
            f,
            "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD"
        );
    }

    #[test]
    fn generated_certificate_is_stored_privately_and_reused() {
        let dir = temp_dir("reuse").join("nested");
        let first = load_or_generate(&dir, &names(), &provider()).unwrap();
        let dir_mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        let key_mode = std::fs::metadata(dir.join(GENERATED_KEY_FILE))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert_eq!(key_mode, 0o600);
        let again = load_or_generate(&dir, &names(), &provider()).unwrap();
        assert_eq!(first.fingerprint, again.fingerprint);
        let _ = std::fs::remove_dir_all(dir.parent().unwrap());
    }

    #[test]
    fn an_unusable_stored_certificate_is_replaced() {
        let dir = temp_dir("replace");
        let first = load_or_generate(&dir, &names(), &provider()).unwrap();
        std::fs::write(dir.join(GENERATED_CERTIFICATE_FILE), "not a certificate").unwrap();
        let second = load_or_generate(&dir, &names(), &provider()).unwrap();
        assert_ne!(first.fingerprint, second.fingerprint);
        // A key that belongs to another certificate is as unusable as a missing one.
        let other = generate_self_signed(&names()).unwrap();
        std::fs::write(dir.join(GENERATED_KEY_FILE), other.key).unwrap();
        let third = load_or_generate(&dir, &names(), &provider()).unwrap();
        assert_ne!(second.fingerprint, third.fingerprint);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn names_missing_from_a_certificate_are_found() {
        let dir = temp_dir("missing");
        let loaded = load_or_generate(&dir, &names(), &provider()).unwrap();
        assert!(names_missing_from(&loaded.certified, &names()).is_empty());
        let moved = SubjectNames {
            dns: vec!["box".into(), "other-box".into()],
            ips: vec!["127.0.0.1".parse().unwrap(), "192.0.2.8".parse().unwrap()],
        };
        assert_eq!(
            names_missing_from(&loaded.certified, &moved),
            vec!["other-box".to_string(), "192.0.2.8".to_string()]
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn pem_files_that_do_not_belong_together_are_refused() {
        let dir = temp_dir("mismatch");
        std::fs::create_dir_all(&dir).unwrap();
        let a = generate_self_signed(&names()).unwrap();
        let b = generate_self_signed(&names()).unwrap();
        std::fs::write(dir.join("cert.pem"), a.cert).unwrap();
        std::fs::write(dir.join("key.pem"), b.key).unwrap();
        let err =
            load_pem_files(&dir.join("cert.pem"), &dir.join("key.pem"), &provider()).unwrap_err();
        assert!(matches!(err, CertificateError::Unusable { .. }), "{err}");
        let missing =
            load_pem_files(&dir.join("nope.pem"), &dir.join("key.pem"), &provider()).unwrap_err();
        assert!(
            matches!(missing, CertificateError::Read { .. }),
            "{missing}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn this_machine_names_include_loopback_and_localhost() {
        let n = SubjectNames::of_this_machine();
        assert!(n.dns.iter().any(|d| d == "localhost"));
        assert!(n.ips.contains(&"127.0.0.1".parse().unwrap()));
    }
}
