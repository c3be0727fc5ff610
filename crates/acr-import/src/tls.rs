//! TLS for the HTTPS listener: a certificate and key from files, or a self-signed local CA and a
//! `localhost` / `127.0.0.1` certificate it issues.
//!
//! The self-signed CA is kept in a directory (key included) and reused on the next start, so a
//! user trusts it once; the leaf certificate is issued afresh at every start.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context as _;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Where the certificate comes from.
#[derive(Debug, Clone)]
pub enum TlsSource {
    Files { cert: PathBuf, key: PathBuf },
    SelfSigned { dir: PathBuf, hosts: Vec<String> },
}

/// What the listener serves, and the CA a client should trust (self-signed only).
pub struct TlsMaterial {
    pub config: Arc<rustls::ServerConfig>,
    pub ca_pem: Option<String>,
    pub ca_path: Option<PathBuf>,
}

const CA_CERT: &str = "ca.pem";
const CA_KEY: &str = "ca-key.pem";

fn ca_params() -> anyhow::Result<CertificateParams> {
    let mut p = CertificateParams::new(Vec::<String>::new()).context("CA parameters")?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "acr-import local CA");
    dn.push(DnType::OrganizationName, "acr-import");
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2049, 12, 31);
    Ok(p)
}

/// Loads (or creates) the local CA in `dir`, issues a leaf for `hosts`.
fn self_signed(dir: &Path, hosts: &[String]) -> anyhow::Result<(String, String, String, PathBuf)> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    let params = ca_params()?;
    let (ca_pem, ca_key) = match (
        std::fs::read_to_string(&cert_path),
        std::fs::read_to_string(&key_path),
    ) {
        (Ok(cert), Ok(key)) => {
            let key = KeyPair::from_pem(&key)
                .with_context(|| format!("reading the CA key {}", key_path.display()))?;
            (cert, key)
        }
        _ => {
            let key = KeyPair::generate().context("generating the CA key")?;
            let cert = params.self_signed(&key).context("signing the CA")?;
            write_private(&key_path, &key.serialize_pem())?;
            std::fs::write(&cert_path, cert.pem())
                .with_context(|| format!("writing {}", cert_path.display()))?;
            (cert.pem(), key)
        }
    };
    let issuer = Issuer::new(params, ca_key);
    let mut leaf = CertificateParams::new(hosts.to_vec()).context("certificate hosts")?;
    leaf.distinguished_name = DistinguishedName::new();
    leaf.distinguished_name.push(
        DnType::CommonName,
        hosts.first().map(String::as_str).unwrap_or("localhost"),
    );
    leaf.use_authority_key_identifier_extension = true;
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let leaf_key = KeyPair::generate().context("generating the server key")?;
    let leaf_cert = leaf
        .signed_by(&leaf_key, &issuer)
        .context("issuing the server certificate")?;
    let chain = format!("{}{}", leaf_cert.pem(), ca_pem);
    Ok((chain, leaf_key.serialize_pem(), ca_pem, cert_path))
}

fn write_private(path: &Path, content: &str) -> anyhow::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    f.write_all(content.as_bytes())
        .with_context(|| format!("writing {}", path.display()))
}

/// Builds the rustls configuration (HTTP/2 and HTTP/1.1 by ALPN).
pub fn load(source: &TlsSource) -> anyhow::Result<TlsMaterial> {
    let (chain_pem, key_pem, ca_pem, ca_path) = match source {
        TlsSource::Files { cert, key } => {
            let c = std::fs::read_to_string(cert)
                .with_context(|| format!("reading --tls-cert {}", cert.display()))?;
            let k = std::fs::read_to_string(key)
                .with_context(|| format!("reading --tls-key {}", key.display()))?;
            (c, k, None, None)
        }
        TlsSource::SelfSigned { dir, hosts } => {
            let (c, k, ca, path) = self_signed(dir, hosts)?;
            (c, k, Some(ca), Some(path))
        }
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<_, _>>()
        .context("the certificate file holds no valid PEM certificate")?;
    if certs.is_empty() {
        anyhow::bail!("the certificate file holds no certificate");
    }
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .context("the key file holds no valid PEM private key")?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .context("the certificate and key do not form a usable pair")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsMaterial {
        config: Arc::new(config),
        ca_pem,
        ca_path,
    })
}
