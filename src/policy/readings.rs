//! The readings of a request path: the paths that common upstreams make of
//! one raw target. Rules judge a normalised path, but the upstream gets the
//! raw one, and upstreams read it differently: Node's URL parser takes `\`
//! for `/`, Java servlet containers cut `;` parameters, Express, ASP.NET and
//! IIS route case-insensitively, Windows drops trailing dots and spaces and
//! `::$` streams, some stacks decode twice or apply NFKC. `Policy::judge`
//! matches the rules against every reading and requires what each asks; what
//! no honest URL needs, or what some reading cannot resolve safely, is
//! refused here (README, "What portcullis refuses").

use std::borrow::Cow;

use smallvec::SmallVec;
use unicode_normalization::UnicodeNormalization;

/// Why a request path is refused before any rule sees it. Shown to the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathRefused {
    #[error("The request path is not an absolute path.")]
    NotAbsolute,
    #[error(
        "The request path has `.` or `..` segments (plain, encoded, or as some servers read it); send it resolved."
    )]
    DotSegments,
    #[error("The request path has a `%` that is not followed by two hex digits.")]
    MalformedEscape,
    #[error("The request path does not decode to valid UTF-8.")]
    NotUtf8,
    #[error("The request path has a control character.")]
    ControlCharacter,
    #[error("The request path has an encoded slash or backslash (`%2F`, `%5C`).")]
    EncodedSlash,
    #[error("The request path has a backslash next to another separator.")]
    Backslash,
    #[error("The request path has a segment in the form of a Windows short name (`name~1`).")]
    ShortName,
    #[error(
        "The request path can be read in too many ways (encodings, separators, parameters, case and Unicode forms at once)."
    )]
    TooAmbiguous,
    #[error(
        "The request path can be read as belonging to more than one application; send it in plain form."
    )]
    AmbiguousRoute,
}

/// The most variants of one path (before case folding) that are judged: an
/// honest path has one to four; more means a path built to make every
/// reading fork, and the work of judging them would be the client's lever.
const MAX_VARIANTS: usize = 16;

/// How the upstream is known to read paths (`[access]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathOptions {
    /// The upstream routes case-sensitively: no case-folded reading.
    pub case_sensitive: bool,
    /// `%2F` and `%5C` are allowed; read both as data and as separators.
    pub encoded_slashes: bool,
    /// Some rule has capitals: where case is folded, a path is compared with
    /// the folded patterns even when folding leaves it as it is.
    pub fold_unchanged: bool,
}

/// One reading of a path: normalised (decoded, `//` collapsed, no dot
/// segments), and whether it was case-folded (then it is compared with the
/// rules' folded patterns).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reading<'a> {
    pub path: Cow<'a, str>,
    pub folded: bool,
}

/// Nearly every path has a single reading, which is the path as it is.
pub type Readings<'a> = SmallVec<[Reading<'a>; 1]>;

/// Every reading of `raw` (a request target's path, no query), or why it is refused.
pub fn read(raw: &str, options: PathOptions) -> Result<Readings<'_>, PathRefused> {
    if is_plain(raw, options) && (options.case_sensitive || !options.fold_unchanged) {
        let mut one = Readings::new();
        one.push(Reading {
            path: Cow::Borrowed(raw),
            folded: false,
        });
        return Ok(one);
    }
    read_slowly(raw, options).map(|all| all.into_iter().collect())
}

/// `raw` with every run of `/` collapsed into one, when it has such a run:
/// what the proxy forwards instead, since the readings collapse it and an
/// upstream may read a leading `//host` as an authority.
pub fn collapse_slashes(raw: &str) -> Option<String> {
    if !raw.contains("//") {
        return None;
    }
    let mut out = String::with_capacity(raw.len());
    for c in raw.chars() {
        if !(c == '/' && out.ends_with('/')) {
            out.push(c);
        }
    }
    Some(out)
}

/// Whether `raw` has one reading, itself, as nearly every path a browser
/// sends: absolute, and nothing any reading changes (no `%`, `;`, `\`, `:`,
/// `~`, space, non-ASCII, or capitals where case is folded; no empty, `.` or
/// `..` segment, none ending in `.`). Checked without allocating.
fn is_plain(raw: &str, options: PathOptions) -> bool {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return false;
    }
    let mut segment_start = 1;
    for (i, &b) in bytes.iter().enumerate().skip(1) {
        let changes_a_reading = match b {
            b'%' | b';' | b'\\' | b':' | b'~' | b' ' => true,
            b'A'..=b'Z' => !options.case_sensitive,
            b if !(0x20..0x7f).contains(&b) => true,
            b'/' => {
                let segment = &bytes[segment_start..i];
                segment_start = i + 1;
                matches!(segment, [] | [.., b'.'])
            }
            _ => false,
        };
        if changes_a_reading {
            return false;
        }
    }
    // The last segment may be empty (a trailing `/`), not end in `.`.
    !bytes[segment_start..].ends_with(b".")
}

/// [`read`] the long way: each decoding of `raw`, then each transformation
/// an upstream may apply, each normalised; duplicates removed.
fn read_slowly(raw: &str, options: PathOptions) -> Result<Vec<Reading<'static>>, PathRefused> {
    if !raw.starts_with('/') {
        return Err(PathRefused::NotAbsolute);
    }
    let encoded_slash = has_encoded_slash(raw)?;
    if encoded_slash && !options.encoded_slashes {
        return Err(PathRefused::EncodedSlash);
    }

    // Decoded once (encoded slashes become separators); decoded once with
    // encoded slashes kept as data; decoded once more.
    let once = decode(raw, false)?;
    let mut variants = vec![once];
    if encoded_slash {
        variants.push(decode(raw, true)?);
    }
    if variants[0].contains('%') {
        let twice = decode(&variants[0], false)?;
        push_new(&mut variants, twice)?;
    }
    fork(&mut variants, |s| {
        (!s.is_ascii()).then(|| s.nfkc().collect::<String>())
    })?;
    if variants.iter().any(|s| backslash_next_to_separator(s)) {
        return Err(PathRefused::Backslash);
    }
    fork(&mut variants, |s| {
        s.contains('\\').then(|| s.replace('\\', "/"))
    })?;
    fork(&mut variants, |s| {
        s.contains(';')
            .then(|| map_segments(s, |seg| seg.split(';').next().unwrap_or_default()))
    })?;
    fork(&mut variants, |s| {
        s.split('/')
            .any(|seg| seg != windows_name(seg))
            .then(|| map_segments(s, windows_name))
    })?;

    let mut readings: Vec<Reading<'static>> = Vec::with_capacity(variants.len() * 2);
    for variant in &variants {
        let path = normalise(variant)?;
        let folded = (!options.case_sensitive)
            .then(|| path.to_lowercase())
            .filter(|lower| options.fold_unchanged || *lower != path);
        for (path, folded) in [(Some(path), false), (folded, true)] {
            if let Some(path) = path {
                let reading = Reading {
                    path: Cow::Owned(path),
                    folded,
                };
                if !readings.contains(&reading) {
                    readings.push(reading);
                }
            }
        }
    }
    Ok(readings)
}

/// Whether `raw` has `%2F` or `%5C`; refuses a `%` without two hex digits
/// after it (`%u002e` is IIS's own encoding; honest URLs encode `%` as `%25`).
fn has_encoded_slash(raw: &str) -> Result<bool, PathRefused> {
    let bytes = raw.as_bytes();
    let mut found = false;
    for (i, _) in bytes.iter().enumerate().filter(|(_, b)| **b == b'%') {
        let (Some(hi), Some(lo)) = (bytes.get(i + 1), bytes.get(i + 2)) else {
            return Err(PathRefused::MalformedEscape);
        };
        if !hi.is_ascii_hexdigit() || !lo.is_ascii_hexdigit() {
            return Err(PathRefused::MalformedEscape);
        }
        found |= matches!((hi, lo.to_ascii_uppercase()), (b'2', b'F') | (b'5', b'C'));
    }
    Ok(found)
}

/// `raw` percent-decoded once; with `keep_slashes`, `%2F` and `%5C` stay
/// encoded (as an upstream that does not split on them sees them). Refuses
/// what is not UTF-8 (overlong forms such as `%c0%ae` included) and control
/// characters (NUL among them).
fn decode(raw: &str, keep_slashes: bool) -> Result<String, PathRefused> {
    let decoded: Cow<'_, [u8]> = if keep_slashes {
        // Every escape decoded but the slashes (escapes were checked well formed).
        let mut bytes = Vec::with_capacity(raw.len());
        let mut rest = raw;
        while let Some(at) = rest.find('%') {
            bytes.extend(percent_encoding::percent_decode_str(&rest[..at]));
            let escape = &rest[at..at + 3];
            if escape.eq_ignore_ascii_case("%2f") || escape.eq_ignore_ascii_case("%5c") {
                bytes.extend_from_slice(escape.to_ascii_uppercase().as_bytes());
            } else {
                bytes.extend(percent_encoding::percent_decode_str(escape));
            }
            rest = &rest[at + 3..];
        }
        bytes.extend(percent_encoding::percent_decode_str(rest));
        Cow::Owned(bytes)
    } else {
        percent_encoding::percent_decode_str(raw).into()
    };
    let text = String::from_utf8(decoded.into_owned()).map_err(|_| PathRefused::NotUtf8)?;
    if text.chars().any(char::is_control) {
        return Err(PathRefused::ControlCharacter);
    }
    Ok(text)
}

/// Adds `f(v)` for every variant `v` that `f` changes, once.
fn fork(variants: &mut Vec<String>, f: impl Fn(&str) -> Option<String>) -> Result<(), PathRefused> {
    for i in 0..variants.len() {
        if let Some(new) = f(&variants[i]) {
            push_new(variants, new)?;
        }
    }
    Ok(())
}

fn push_new(variants: &mut Vec<String>, new: String) -> Result<(), PathRefused> {
    if !variants.contains(&new) {
        if variants.len() == MAX_VARIANTS {
            return Err(PathRefused::TooAmbiguous);
        }
        variants.push(new);
    }
    Ok(())
}

fn map_segments<'s>(s: &'s str, f: impl Fn(&'s str) -> &'s str) -> String {
    let mut out = String::with_capacity(s.len());
    for (i, seg) in s.split('/').enumerate() {
        if i > 0 {
            out.push('/');
        }
        out.push_str(f(seg));
    }
    out
}

/// What Windows makes of a path segment: the name before any `:` stream
/// (`admin::$INDEX_ALLOCATION`), without trailing dots and spaces. A name of
/// only dots and spaces (`.. `) becomes `..`, refused as a dot segment, since
/// Windows resolves it as one or to nothing.
fn windows_name(segment: &str) -> &str {
    let name = segment.split(':').next().unwrap_or_default();
    let trimmed = name.trim_end_matches(['.', ' ']);
    if trimmed.is_empty() && !name.is_empty() {
        ".."
    } else {
        trimmed
    }
}

/// `\` beside a separator: with `\` read as `/`, `/\host/x` is `//host/x`,
/// which a URL parser reads as another host.
fn backslash_next_to_separator(s: &str) -> bool {
    s.contains("\\\\") || s.contains("/\\") || s.contains("\\/")
}

/// Empty segments collapsed (a trailing `/` kept); refuses dot segments and
/// Windows short names.
fn normalise(decoded: &str) -> Result<String, PathRefused> {
    let mut path = String::with_capacity(decoded.len());
    let mut trailing_slash = false;
    for segment in decoded.split('/').skip(1) {
        match segment {
            "" => trailing_slash = !path.is_empty(),
            "." | ".." => return Err(PathRefused::DotSegments),
            s if is_short_name(s) => return Err(PathRefused::ShortName),
            s => {
                path.push('/');
                path.push_str(s);
                trailing_slash = false;
            }
        }
    }
    if trailing_slash || path.is_empty() {
        path.push('/');
    }
    Ok(path)
}

/// A Windows 8.3 short name: up to six characters, `~`, digits (eight at
/// most), an extension of up to three (`PROGRA~1`, `admin~1.htm`). Windows
/// serves the long name it stands for, which no rule can know.
fn is_short_name(segment: &str) -> bool {
    let (base, extension) = segment.split_once('.').unwrap_or((segment, ""));
    let Some((stem, digits)) = base.rsplit_once('~') else {
        return false;
    };
    (1..=6).contains(&stem.chars().count())
        && !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && base.chars().count() <= 8
        && extension.chars().count() <= 3
}

#[cfg(test)]
mod tests;
