//! TLS for PostgreSQL, as libpq's `sslmode` and `sslrootcert` ask for it, over rustls.
//!
//! | sslmode | encrypted | the server's certificate |
//! |---|---|---|
//! | `disable` | no | - |
//! | `allow`, `prefer` (the default) | when the server offers TLS | not checked |
//! | `require` | yes | not checked; checked as `verify-ca` when a root file exists |
//! | `verify-ca` | yes | signed by a root of `sslrootcert` |
//! | `verify-full` | yes | that, and issued for the host connected to |
//!
//! `sslrootcert` is a PEM file of root certificates (default `~/.postgresql/root.crt`) or
//! `system` for the machine's trust store (libpq 16's spelling; it implies `verify-full`
//! unless `sslmode` says otherwise). `PGSSLMODE` and `PGSSLROOTCERT` give defaults, as for
//! libpq. Client certificates (`sslcert`, `sslkey`) are not supported and are refused.

use std::path::PathBuf;
use std::sync::Arc;

use postgres::config::SslMode;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, CryptoProvider};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore};
use tokio_postgres_rustls::MakeRustlsConnect;

/// libpq's `sslmode` values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Mode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl Mode {
    fn parse(s: &str) -> Result<Self, String> {
        Ok(match s {
            "disable" => Mode::Disable,
            "allow" => Mode::Allow,
            "prefer" => Mode::Prefer,
            "require" => Mode::Require,
            "verify-ca" => Mode::VerifyCa,
            "verify-full" => Mode::VerifyFull,
            other => {
                return Err(format!(
                    "sslmode={other} is not one of disable, allow, prefer, require, verify-ca, \
                     verify-full"
                ))
            }
        })
    }

    /// What the driver negotiates: whether it asks for TLS and whether it insists.
    pub(crate) fn driver(self) -> SslMode {
        match self {
            Mode::Disable => SslMode::Disable,
            Mode::Allow | Mode::Prefer => SslMode::Prefer,
            Mode::Require | Mode::VerifyCa | Mode::VerifyFull => SslMode::Require,
        }
    }
}

/// Where the trusted roots come from.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Roots {
    File(PathBuf),
    System,
}

/// The TLS settings of a URL, taken out of its query (the driver knows neither `verify-*` nor
/// `sslrootcert`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Settings {
    pub(crate) mode: Mode,
    roots: Option<Roots>,
}

/// libpq's keys for what is not supported, refused rather than ignored.
const REFUSED: [&str; 4] = ["sslcert", "sslkey", "sslpassword", "sslcrl"];

/// Takes the TLS settings out of a URL (`...?sslmode=verify-full&sslrootcert=ca.pem`), with
/// `PGSSLMODE` and `PGSSLROOTCERT` as defaults; returns them and the URL without them.
pub(crate) fn take(url: &str) -> Result<(Settings, String), String> {
    let (base, query) = match url.split_once('?') {
        Some((b, q)) => (b, q),
        None => (url, ""),
    };
    let mut mode = None;
    let mut roots = None;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if REFUSED.contains(&key) {
            return Err(format!(
                "{key}: client certificates are not supported; authenticate with a password \
                 (in the URL, PGPASSWORD or ~/.pgpass)"
            ));
        }
        match key {
            "sslmode" => mode = Some(Mode::parse(&decode(value)?)?),
            "sslrootcert" => roots = Some(decode(value)?),
            _ => rest.push(pair),
        }
    }
    let env = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    let roots = roots.or_else(|| env("PGSSLROOTCERT"));
    let mode = match mode {
        Some(m) => m,
        None => match env("PGSSLMODE") {
            Some(m) => Mode::parse(&m).map_err(|e| format!("PGSSLMODE: {e}"))?,
            // libpq: the system's roots imply checking the host's name.
            None if roots.as_deref() == Some("system") => Mode::VerifyFull,
            None => Mode::Prefer,
        },
    };
    let roots = roots.map(|r| match r.as_str() {
        "system" => Roots::System,
        path => Roots::File(PathBuf::from(path)),
    });
    let url = if rest.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", rest.join("&"))
    };
    Ok((Settings { mode, roots }, url))
}

/// `%XX` escapes of a URL's query value.
fn decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("a bad %-escape in `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` is not UTF-8 once decoded"))
}

impl Settings {
    /// The connector for these settings: reads the root certificates now, so that a missing
    /// or bad file is reported before any connection.
    pub(crate) fn connector(&self) -> Result<MakeRustlsConnect, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let default_file =
            || std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".postgresql/root.crt"));
        let roots = match &self.roots {
            Some(r) => Some(r.clone()),
            // libpq reads the default file for verify-* (and for require, when it exists).
            None => match default_file() {
                Some(f) if f.is_file() => Some(Roots::File(f)),
                _ => None,
            },
        };
        let check = match (self.mode, &roots) {
            (Mode::Disable | Mode::Allow | Mode::Prefer, _) | (Mode::Require, None) => None,
            (Mode::VerifyCa | Mode::VerifyFull, None) => {
                let f = default_file()
                    .map(|f| f.display().to_string())
                    .unwrap_or_else(|| "~/.postgresql/root.crt".into());
                return Err(format!(
                    "sslmode={} checks the server's certificate, but the root certificate file \
                     {f} does not exist: give one with sslrootcert=PATH (PEM), use the \
                     machine's trusted roots with sslrootcert=system, or use sslmode=require",
                    if self.mode == Mode::VerifyCa {
                        "verify-ca"
                    } else {
                        "verify-full"
                    }
                ));
            }
            (mode, Some(r)) => Some((load_roots(r)?, mode == Mode::VerifyFull)),
        };
        let verifier: Arc<dyn ServerCertVerifier> = match check {
            None => Arc::new(Unchecked(Arc::clone(&provider))),
            Some((store, full)) => {
                let webpki =
                    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
                        .build()
                        .map_err(|e| format!("the root certificates cannot be used: {e}"))?;
                if full {
                    webpki
                } else {
                    Arc::new(AnyName(webpki))
                }
            }
        };
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS set-up: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        Ok(MakeRustlsConnect::new(config))
    }
}

fn load_roots(roots: &Roots) -> Result<RootCertStore, String> {
    let mut store = RootCertStore::empty();
    match roots {
        Roots::System => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = store.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(format!(
                    "sslrootcert=system: no trusted roots found on this machine ({}); install \
                     the ca-certificates package or give a file with sslrootcert=PATH",
                    found
                        .errors
                        .first()
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "the trust store is empty".into())
                ));
            }
        }
        Roots::File(path) => {
            let shown = path.display();
            let bytes = std::fs::read(path)
                .map_err(|e| format!("cannot read the root certificate file {shown}: {e}"))?;
            let certs = CertificateDer::pem_slice_iter(&bytes)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("the root certificate file {shown} is not PEM: {e}"))?;
            if certs.is_empty() {
                return Err(format!(
                    "the root certificate file {shown} holds no certificate (BEGIN \
                     CERTIFICATE)"
                ));
            }
            for c in certs {
                store
                    .add(c)
                    .map_err(|e| format!("a certificate in {shown} cannot be a root: {e}"))?;
            }
        }
    }
    Ok(store)
}

/// `verify-ca`: the chain must reach a trusted root; the name it was issued for may differ.
#[derive(Debug)]
struct AnyName(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for AnyName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// `prefer` and `require` without roots: encrypted, the certificate taken as it comes (what
/// libpq does; the handshake's signatures are still checked against it).
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_come_out_of_the_query() {
        let (s, url) = take(
            "postgresql://a@h/d?sslmode=verify-ca&connect_timeout=3&sslrootcert=%2Ftmp%2Fca.pem",
        )
        .unwrap();
        assert_eq!(s.mode, Mode::VerifyCa);
        assert_eq!(s.roots, Some(Roots::File("/tmp/ca.pem".into())));
        assert_eq!(url, "postgresql://a@h/d?connect_timeout=3");
        let (s, url) = take("postgresql://a@h/d?sslmode=disable").unwrap();
        assert_eq!(
            (s.mode, s.roots, url.as_str()),
            (Mode::Disable, None, "postgresql://a@h/d")
        );
        let (s, _) = take("postgresql://a@h/d?sslrootcert=system").unwrap();
        assert_eq!(s.mode, Mode::VerifyFull);
    }

    #[test]
    fn bad_tls_settings_say_what_to_do() {
        let e = take("postgresql://a@h/d?sslmode=verify").unwrap_err();
        assert!(e.contains("sslmode=verify is not one of"), "{e}");
        let e = take("postgresql://a@h/d?sslcert=me.crt").unwrap_err();
        assert!(e.contains("client certificates are not supported"), "{e}");
        let s = Settings {
            mode: Mode::VerifyFull,
            roots: Some(Roots::File("/no/such/ca.pem".into())),
        };
        let e = s.connector().err().unwrap();
        assert!(
            e.contains("cannot read the root certificate file /no/such/ca.pem"),
            "{e}"
        );
        let dir = std::env::temp_dir().join(format!("descent-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let empty = dir.join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let s = Settings {
            mode: Mode::VerifyCa,
            roots: Some(Roots::File(empty.clone())),
        };
        let e = s.connector().err().unwrap();
        assert!(e.contains("holds no certificate"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
