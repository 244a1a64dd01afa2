//! `postgres://user@host:port/db?table=name`: one table of (bytea key, bytea
//! value) in a PostgreSQL database, shared by many processes and machines.
//!
//! * The table (default `vx_objects`) is created on first use, with TOAST
//!   compression off (sealed objects do not compress).
//! * A batch is one transaction; puts go in as multi-row `INSERT ... SELECT
//!   FROM UNNEST(...) ON CONFLICT DO UPDATE` statements of bounded size,
//!   deletes as one `DELETE ... WHERE k = ANY(...)`.
//! * The compare-and-set of a batch takes a transaction-scoped advisory lock
//!   on its key before checking it, so two writers expecting the same
//!   manifest (or key record) serialise: the second sees the first's value,
//!   its check fails, nothing of it is applied, and the index layer retries
//!   or reports (see `index::write`).
//! * Connections are pooled; a connection the server dropped is discarded,
//!   and a call that finds its pooled connection dead runs once more on a new
//!   one, unless it is a write that got as far as COMMIT: its outcome is then
//!   unknown, and the caller gets `STORAGE` (the index is the old state or
//!   the new one, whole; tests/postgres.rs checks that).
//! * Errors are `STORAGE` with the server's message, naming host, port,
//!   database and table, never the user or password.
//! * TLS (rustls), `sslmode` as libpq: `disable` (clear), `prefer` (the
//!   default: encrypted if the server offers it), `require` (encrypted or
//!   refused); these two verify the server's certificate only when
//!   `sslrootcert=/path/ca.pem` is given. `verify-ca` and `verify-full`
//!   always verify the chain and the host name (both: stricter than libpq's
//!   `verify-ca`), against the system's roots plus `sslrootcert`.

use std::str::FromStr;

use parking_lot::Mutex;
use postgres::config::SslMode;
use postgres::{Client, NoTls, Statement};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use sha2::{Digest, Sha256};
use tokio_postgres_rustls::MakeRustlsConnect;

use super::{Op, Store, ValuePart, WriteBatch};
use crate::error::{Error, Result};

const DEFAULT_TABLE: &str = "vx_objects";
/// Idle connections kept for reuse.
const MAX_IDLE: usize = 16;
/// Bytes of values per INSERT statement (PostgreSQL caps a message at 1 GiB).
const INSERT_BYTES: usize = 32 << 20;

/// One connection with its prepared statements.
struct Conn {
    client: Client,
    get: Statement,
    get_many: Statement,
    get_parts: Statement,
    scan_range: Statement,
    scan_from: Statement,
    keys_range: Statement,
    upsert: Statement,
    delete: Statement,
    lock: Statement,
}

pub struct PostgresStore {
    config: postgres::Config,
    /// `None` for `sslmode=disable`.
    tls: Option<MakeRustlsConnect>,
    table: String,
    /// "host:port/db table t", for messages (no credentials).
    place: String,
    idle: Mutex<Vec<Conn>>,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore").field("place", &self.place).finish_non_exhaustive()
    }
}

/// What vx reads from the URI itself; the driver refuses unknown options
/// and knows no `verify-*` modes.
struct Options {
    base: String,
    table: String,
    root_cert: Option<String>,
    /// Verify the server's certificate (a `verify-*` mode or a root cert).
    verify: bool,
}

/// Splits `table=`, `sslrootcert=` and `sslmode=verify-*` off the URI
/// (`verify-*` goes on as `require`) and checks the table name is a plain
/// SQL identifier.
fn split_options(uri: &str) -> Result<Options> {
    let (base, query) = match uri.split_once('?') {
        Some((b, q)) => (b, q),
        None => (uri, ""),
    };
    let mut table = DEFAULT_TABLE.to_owned();
    let mut root_cert = None;
    let mut verify_mode = false;
    let mut rest = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        if let Some(t) = pair.strip_prefix("table=") {
            table = t.to_owned();
        } else if let Some(path) = pair.strip_prefix("sslrootcert=") {
            root_cert = Some(path.to_owned());
        } else if pair == "sslmode=verify-ca" || pair == "sslmode=verify-full" {
            verify_mode = true;
            rest.push("sslmode=require");
        } else {
            rest.push(pair);
        }
    }
    let valid = !table.is_empty()
        && table.len() <= 63
        && table.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && table.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(Error::invalid(format!(
            "postgres table name '{table}' must be 1 to 63 of a-z, 0-9 and _, not starting with a digit"
        )));
    }
    let base = if rest.is_empty() { base.to_owned() } else { format!("{base}?{}", rest.join("&")) };
    let verify = verify_mode || root_cert.is_some();
    Ok(Options { base, table, root_cert, verify })
}

/// Accepts any server certificate but still checks that the server holds
/// its key (the handshake signatures): libpq's `prefer` and `require`
/// without a root certificate. Encrypts against eavesdroppers, not against
/// an active man in the middle (THREAT_MODEL.md).
#[derive(Debug)]
struct EncryptOnly(std::sync::Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls_pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls_pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The TLS connector for `verify` (the system's trusted roots plus
/// `root_cert`) or encryption only.
fn tls_connector(root_cert: Option<&str>, verify: bool) -> Result<MakeRustlsConnect> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Internal(format!("TLS setup: {e}")))?;
    if !verify {
        let config = builder
            .dangerous()
            .with_custom_certificate_verifier(std::sync::Arc::new(EncryptOnly(provider)))
            .with_no_client_auth();
        return Ok(MakeRustlsConnect::new(config));
    }
    let mut roots = rustls::RootCertStore::empty();
    // Unreadable system certificates are skipped: with none at all, only a
    // given sslrootcert can verify a server, and connecting says so.
    let native = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(native.certs);
    if let Some(path) = root_cert {
        let bad = |e: &dyn std::fmt::Display| Error::invalid(format!("sslrootcert '{path}': {e}"));
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(&e))?
            .collect::<std::result::Result<_, _>>()
            .map_err(|e| bad(&e))?;
        if certs.is_empty() {
            return Err(bad(&"no PEM certificate in the file"));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| bad(&e))?;
        }
    }
    Ok(MakeRustlsConnect::new(builder.with_root_certificates(roots).with_no_client_auth()))
}

impl PostgresStore {
    pub fn open(uri: &str) -> Result<PostgresStore> {
        let Options { base, table, root_cert, verify } = split_options(uri)?;
        // The driver's parse errors quote no part of the URI, so the
        // password cannot leak through them.
        let mut config =
            postgres::Config::from_str(&base).map_err(|e| Error::invalid(format!("postgres URI is not valid: {e}")))?;
        if config.get_application_name().is_none() {
            config.application_name("vx");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(std::time::Duration::from_secs(10));
        }
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                postgres::config::Host::Tcp(s) => s.clone(),
                postgres::config::Host::Unix(p) => p.display().to_string(),
            })
            .collect();
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let db = config.get_dbname().or(config.get_user()).unwrap_or("postgres");
        let place = format!("{}:{port}/{db} table {table}", hosts.join(","));
        let tls = match config.get_ssl_mode() {
            SslMode::Disable => None,
            _ => Some(tls_connector(root_cert.as_deref(), verify)?),
        };
        let store = PostgresStore { config, tls, table, place, idle: Mutex::new(Vec::new()) };
        store.create_table()?;
        Ok(store)
    }

    fn error(&self, e: postgres::Error) -> Error {
        // `Display` of a server error is "db error: ERROR: <message>"; add
        // the detail line when there is one.
        let detail = e.as_db_error().and_then(|d| d.detail()).map(|d| format!(" ({d})")).unwrap_or_default();
        Error::Storage(format!("postgres store {}: {e}{detail}", self.place))
    }

    fn open_connection(&self) -> Result<Client> {
        match &self.tls {
            Some(tls) => self.config.connect(tls.clone()),
            None => self.config.connect(NoTls),
        }
        .map_err(|e| self.error(e))
    }

    fn create_table(&self) -> Result<()> {
        let t = &self.table;
        let mut client = self.open_connection()?;
        let run = |client: &mut Client| -> std::result::Result<(), postgres::Error> {
            let mut tx = client.transaction()?;
            let exists: Option<String> = tx.query_one("SELECT to_regclass($1)::text", &[t])?.get(0);
            if exists.is_none() {
                tx.batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {t} (k bytea PRIMARY KEY, v bytea NOT NULL);
                     ALTER TABLE {t} ALTER COLUMN v SET STORAGE EXTERNAL;"
                ))?;
            }
            tx.commit()
        };
        // Two processes creating the table at once: one wins, the other's
        // CREATE fails on the catalog's unique index; the table exists then.
        if let Err(e) = run(&mut client) {
            run(&mut client).map_err(|_| self.error(e))?;
        }
        Ok(())
    }

    fn connect(&self) -> Result<Conn> {
        let mut client = self.open_connection()?;
        let t = &self.table;
        let mut prep = |sql: String| client.prepare(&sql);
        let conn = (|| {
            Ok::<_, postgres::Error>((
                prep(format!("SELECT v FROM {t} WHERE k = $1"))?,
                prep(format!("SELECT k, v FROM {t} WHERE k = ANY($1)"))?,
                // substring counts from 1; a part past the value's end is
                // shorter than asked, and the caller treats it as absent.
                prep(format!(
                    "SELECT p.i, substring(t.v FROM (p.s + 1)::int4 FOR p.n) FROM {t} t \
                     JOIN UNNEST($1::bytea[], $2::int8[], $3::int4[]) WITH ORDINALITY AS p(k, s, n, i) ON t.k = p.k"
                ))?,
                prep(format!("SELECT k, v FROM {t} WHERE k >= $1 AND k < $2 ORDER BY k"))?,
                prep(format!("SELECT k, v FROM {t} WHERE k >= $1 ORDER BY k"))?,
                prep(format!("SELECT k FROM {t} WHERE k >= $1 AND k < $2 ORDER BY k"))?,
                prep(format!(
                    "INSERT INTO {t} (k, v) SELECT * FROM UNNEST($1::bytea[], $2::bytea[]) \
                     ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
                ))?,
                prep(format!("DELETE FROM {t} WHERE k = ANY($1)"))?,
                prep("SELECT pg_advisory_xact_lock($1)".to_owned())?,
            ))
        })()
        .map_err(|e| self.error(e))?;
        let (get, get_many, get_parts, scan_range, scan_from, keys_range, upsert, delete, lock) = conn;
        Ok(Conn { client, get, get_many, get_parts, scan_range, scan_from, keys_range, upsert, delete, lock })
    }

    /// Runs `f` on a pooled connection. If the connection turns out dead
    /// (the server restarted or dropped it) and `may_retry()` says nothing
    /// can have been applied, runs `f` once more on a fresh connection.
    fn with_conn<T>(
        &self,
        may_retry: impl Fn() -> bool,
        mut f: impl FnMut(&mut Conn) -> std::result::Result<T, postgres::Error>,
    ) -> Result<T> {
        let pooled = std::iter::from_fn(|| self.idle.lock().pop()).find(|c| !c.client.is_closed());
        let from_pool = pooled.is_some();
        let mut conn = match pooled {
            Some(c) => c,
            None => self.connect()?,
        };
        let mut result = f(&mut conn);
        if from_pool && result.as_ref().is_err_and(|e| e.is_closed() || conn.client.is_closed()) && may_retry() {
            conn = self.connect()?;
            result = f(&mut conn);
        }
        if !conn.client.is_closed() {
            let mut idle = self.idle.lock();
            if idle.len() < MAX_IDLE {
                idle.push(conn);
            }
        }
        result.map_err(|e| self.error(e))
    }

    /// The advisory-lock id of a compare-and-set key in this table.
    fn lock_id(&self, key: &[u8]) -> i64 {
        let mut h = Sha256::new();
        h.update(self.table.as_bytes());
        h.update([0]);
        h.update(key);
        i64::from_le_bytes(h.finalize()[..8].try_into().unwrap())
    }
}

/// The smallest key greater than every key starting with `prefix`, if any.
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

impl Store for PostgresStore {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.with_conn(|| true, |c| Ok(c.client.query_opt(&c.get, &[&key])?.map(|row| row.get(0))))
    }

    fn get_many(&self, keys: &[Vec<u8>]) -> Result<Vec<Option<Vec<u8>>>> {
        let refs: Vec<&[u8]> = keys.iter().map(Vec::as_slice).collect();
        let rows = self.with_conn(|| true, |c| c.client.query(&c.get_many, &[&refs]))?;
        let mut found: std::collections::HashMap<Vec<u8>, Vec<u8>> =
            rows.into_iter().map(|r| (r.get(0), r.get(1))).collect();
        Ok(keys.iter().map(|k| found.remove(k)).collect())
    }

    fn get_part(&self, key: &[u8], start: u64, len: u32) -> Result<Option<Vec<u8>>> {
        self.get_parts(&[(key.to_vec(), start, len)]).map(|mut v| v.pop().flatten())
    }

    fn get_parts(&self, parts: &[ValuePart]) -> Result<Vec<Option<Vec<u8>>>> {
        let mut out = vec![None; parts.len()];
        // Offsets past PostgreSQL's 1 GiB value limit are not in any value.
        let asked: Vec<usize> =
            (0..parts.len()).filter(|&i| parts[i].1 < (1 << 30) && parts[i].2 < (1 << 30)).collect();
        if asked.is_empty() {
            return Ok(out);
        }
        let keys: Vec<&[u8]> = asked.iter().map(|&i| parts[i].0.as_slice()).collect();
        let starts: Vec<i64> = asked.iter().map(|&i| parts[i].1 as i64).collect();
        let lens: Vec<i32> = asked.iter().map(|&i| parts[i].2 as i32).collect();
        let rows = self.with_conn(|| true, |c| c.client.query(&c.get_parts, &[&keys, &starts, &lens]))?;
        for row in rows {
            let (at, part): (i64, Vec<u8>) = (row.get(0), row.get(1));
            let i = asked[(at - 1) as usize];
            if part.len() == parts[i].2 as usize {
                out[i] = Some(part);
            }
        }
        Ok(out)
    }

    fn prefers_batched_reads(&self) -> bool {
        true
    }

    fn scan_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let end = prefix_end(prefix);
        let rows = self.with_conn(
            || true,
            |c| match &end {
                Some(end) => c.client.query(&c.scan_range, &[&prefix, &end.as_slice()]),
                None => c.client.query(&c.scan_from, &[&prefix]),
            },
        )?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    fn scan_keys(&self, prefix: &[u8]) -> Result<Vec<Vec<u8>>> {
        let Some(end) = prefix_end(prefix) else {
            return Ok(self.scan_prefix(prefix)?.into_iter().map(|(k, _)| k).collect());
        };
        let rows = self.with_conn(|| true, |c| c.client.query(&c.keys_range, &[&prefix, &end.as_slice()]))?;
        Ok(rows.into_iter().map(|r| r.get(0)).collect())
    }

    fn write(&self, batch: WriteBatch) -> Result<bool> {
        // The final state of each key (a later op on a key replaces an
        // earlier one; one INSERT may not touch a row twice).
        let mut last: std::collections::BTreeMap<&[u8], Option<&[u8]>> = std::collections::BTreeMap::new();
        for op in &batch.ops {
            match op {
                Op::Put(k, v) => last.insert(k, Some(v)),
                Op::Delete(k) => last.insert(k, None),
            };
        }
        let deletes: Vec<&[u8]> = last.iter().filter(|(_, v)| v.is_none()).map(|(k, _)| *k).collect();
        let puts: Vec<(&[u8], &[u8])> = last.iter().filter_map(|(k, v)| v.map(|v| (*k, v))).collect();
        // Until COMMIT is sent, a dead connection means nothing was applied
        // and the batch may run again on a new one; from then on the
        // outcome is unknown and the error goes to the caller.
        let committing = std::cell::Cell::new(false);
        self.with_conn(
            || !committing.get(),
            |c| {
                let mut tx = c.client.transaction()?;
                // Locks in one global order, so two batches expecting
                // overlapping keys cannot deadlock.
                let mut locks: Vec<i64> = batch.expects.iter().map(|(key, _)| self.lock_id(key)).collect();
                locks.sort_unstable();
                locks.dedup();
                for id in &locks {
                    tx.execute(&c.lock, &[id])?;
                }
                for (key, expected) in &batch.expects {
                    let current: Option<Vec<u8>> = tx.query_opt(&c.get, &[&key.as_slice()])?.map(|r| r.get(0));
                    if current != *expected {
                        return Ok(false); // dropping `tx` rolls back
                    }
                }
                if !deletes.is_empty() {
                    tx.execute(&c.delete, &[&deletes])?;
                }
                let mut start = 0;
                while start < puts.len() {
                    let mut end = start;
                    let mut bytes = 0;
                    while end < puts.len() && (end == start || bytes + puts[end].1.len() <= INSERT_BYTES) {
                        bytes += puts[end].1.len();
                        end += 1;
                    }
                    let keys: Vec<&[u8]> = puts[start..end].iter().map(|p| p.0).collect();
                    let values: Vec<&[u8]> = puts[start..end].iter().map(|p| p.1).collect();
                    tx.execute(&c.upsert, &[&keys, &values])?;
                    start = end;
                }
                committing.set(true);
                tx.commit()?;
                Ok(true)
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_names_and_prefix_ends() {
        let o = split_options("postgres://u@h:1/db?table=my_t&sslmode=disable&sslrootcert=/ca.pem").unwrap();
        assert_eq!((o.base.as_str(), o.table.as_str()), ("postgres://u@h:1/db?sslmode=disable", "my_t"));
        assert_eq!(o.root_cert.as_deref(), Some("/ca.pem"));
        assert_eq!(split_options("postgres://h/db").unwrap().table, DEFAULT_TABLE);
        for bad in ["Bad", "1x", "x;drop", "", &"a".repeat(64)] {
            assert!(split_options(&format!("postgres://h/db?table={bad}")).is_err(), "{bad}");
        }
        assert!(o.verify);
        let o = split_options("postgres://h/db?sslmode=verify-full").unwrap();
        assert_eq!((o.base.as_str(), o.verify), ("postgres://h/db?sslmode=require", true));
        assert!(!split_options("postgres://h/db?sslmode=require").unwrap().verify);
        assert!(matches!(tls_connector(Some("/no/such/ca.pem"), true), Err(Error::InvalidArgument(_))));
        assert_eq!(prefix_end(b"o/a"), Some(b"o/b".to_vec()));
        assert_eq!(prefix_end(&[1, 0xff]), Some(vec![2]));
        assert_eq!(prefix_end(&[0xff, 0xff]), None);
    }

    /// The shared store conformance cases against a real server, when the
    /// test environment provides one (scripts/test-all.sh starts one).
    #[test]
    fn conformance() {
        let Some(url) = crate::store::test_postgres_url("store_conformance") else { return };
        let store = PostgresStore::open(&url).unwrap();
        super::super::conformance(&store);
    }

    #[test]
    fn unreachable_server_is_a_storage_error_without_the_password() {
        let e = PostgresStore::open("postgres://vx:s3cret-pw@127.0.0.1:1/db?connect_timeout=2").unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, Error::Storage(_)), "{e:?}");
        assert!(msg.contains("127.0.0.1:1/db") && !msg.contains("s3cret"), "{msg}");
    }
}
