use super::*;

const DEFAULT: PathOptions = PathOptions {
    case_sensitive: false,
    encoded_slashes: false,
    fold_unchanged: false,
};

fn paths(raw: &str, options: PathOptions) -> Vec<(String, bool)> {
    read(raw, options)
        .unwrap_or_else(|e| panic!("{raw:?} refused: {e}"))
        .into_iter()
        .map(|r| (r.path.into_owned(), r.folded))
        .collect()
}

fn plain(path: &str) -> Vec<(String, bool)> {
    vec![(path.to_owned(), false)]
}

#[test]
fn a_plain_path_is_its_only_reading_and_is_borrowed() {
    for raw in [
        "/",
        "/a",
        "/a/",
        "/app.js",
        "/a-b_c/d.e/f",
        "/..a",
        "/.well-known/x",
    ] {
        let readings = read(raw, DEFAULT).unwrap();
        assert_eq!(readings.len(), 1, "{raw}");
        assert!(matches!(readings[0].path, Cow::Borrowed(_)), "{raw}");
        assert_eq!(readings[0].path, raw);
    }
}

#[test]
fn decoding_once_collapsing_slashes_and_cutting_nothing_else_is_the_first_reading() {
    for (raw, want) in [
        ("/a//b", "/a/b"),
        ("//a", "/a"),
        ("///a//", "/a/"),
        ("/x%23y", "/x#y"),
        ("/a/%7Ec/", "/a/~c/"),
        ("/100%25", "/100%"),
    ] {
        assert_eq!(paths(raw, DEFAULT)[0], (want.to_owned(), false), "{raw}");
    }
}

#[test]
fn each_way_an_upstream_may_read_a_path_is_a_reading() {
    let cases: [(&str, &[&str]); 8] = [
        // Case-insensitive routing (Express, ASP.NET Core, IIS).
        ("/Admin/x", &["/Admin/x", "/admin/x"]),
        // `\` as a separator (Node/Deno/Bun URL parsers, IIS).
        ("/admin\\x", &["/admin\\x", "/admin/x"]),
        // Path parameters cut off (Java servlet containers).
        ("/admin;x/panel", &["/admin;x/panel", "/admin/panel"]),
        // Windows: trailing dots and spaces, `::$` streams.
        ("/admin./x", &["/admin./x", "/admin/x"]),
        ("/admin%20/x", &["/admin /x", "/admin/x"]),
        (
            "/admin::$INDEX_ALLOCATION/x",
            &[
                "/admin::$INDEX_ALLOCATION/x",
                "/admin/x",
                "/admin::$index_allocation/x",
            ],
        ),
        // NFKC: a fullwidth `ａ`.
        ("/%EF%BD%81dmin/x", &["/\u{ff41}dmin/x", "/admin/x"]),
        // Decoded once more.
        ("/a%2541", &["/a%41", "/aA", "/aa"]),
    ];
    for (raw, want) in cases {
        let got: Vec<String> = paths(raw, DEFAULT).into_iter().map(|(p, _)| p).collect();
        for w in want {
            assert!(got.iter().any(|g| g == w), "{raw}: {w} not among {got:?}");
        }
    }
}

#[test]
fn what_no_honest_url_needs_is_refused() {
    for (raw, why) in [
        ("/public/..\\private", PathRefused::DotSegments),
        ("/public/%2e%2e/admin", PathRefused::DotSegments),
        ("/a/./b", PathRefused::DotSegments),
        ("/..", PathRefused::DotSegments),
        ("/public/..;/admin", PathRefused::DotSegments),
        ("/public/%252e%252e/admin", PathRefused::DotSegments),
        ("/public/..%20/admin", PathRefused::DotSegments),
        ("/public/.../admin", PathRefused::DotSegments),
        ("/public/%EF%BC%8E%EF%BC%8E/admin", PathRefused::DotSegments),
        ("/public/%c0%ae%c0%ae/admin", PathRefused::NotUtf8),
        ("/public/%ff", PathRefused::NotUtf8),
        ("/public/%u002e%u002e/admin", PathRefused::MalformedEscape),
        ("/public/%", PathRefused::MalformedEscape),
        ("/public/%2", PathRefused::MalformedEscape),
        ("/public/..%00/admin", PathRefused::ControlCharacter),
        ("/public/%2500", PathRefused::ControlCharacter),
        ("/a%0ab", PathRefused::ControlCharacter),
        ("/public/..%2fadmin", PathRefused::EncodedSlash),
        ("/public/..%5cprivate", PathRefused::EncodedSlash),
        ("/a%2Fb", PathRefused::EncodedSlash),
        ("/\\evil/x", PathRefused::Backslash),
        ("/a\\\\b", PathRefused::Backslash),
        ("/admin~1/x", PathRefused::ShortName),
        ("/PROGRA~1/x", PathRefused::ShortName),
        ("/x/admin~12.htm", PathRefused::ShortName),
        ("*", PathRefused::NotAbsolute),
        ("", PathRefused::NotAbsolute),
    ] {
        assert_eq!(read(raw, DEFAULT).map(|_| ()), Err(why), "{raw}");
    }
}

#[test]
fn a_path_built_to_fork_every_reading_is_refused_past_sixteen_variants() {
    // Decoded twice, NFKC, `;`, Windows: 16 variants, judged.
    let sixteen = "/Admin;x/a%2541b./%EF%BD%81:y";
    assert_eq!(
        read_slowly(sixteen, DEFAULT).map(|r| r.len() > 16),
        Ok(true)
    );
    // And `\` on top: 32, refused before any is normalised or matched.
    let thirty_two = "/Admin;x/a%2541\\b./%EF%BD%81:y".repeat(100);
    assert_eq!(
        read(&thirty_two, DEFAULT).map(|_| ()),
        Err(PathRefused::TooAmbiguous)
    );
}

#[test]
fn tildes_that_are_not_short_names_pass() {
    for raw in ["/~user/x", "/a~b/x", "/toolongname~1/x", "/a~/x", "/a~1x/y"] {
        assert!(read(raw, DEFAULT).is_ok(), "{raw}");
    }
}

#[test]
fn the_operator_can_say_the_upstream_is_case_sensitive() {
    let options = PathOptions {
        case_sensitive: true,
        ..DEFAULT
    };
    assert_eq!(paths("/Admin/x", options), plain("/Admin/x"));
    assert_eq!(paths("/Admin/x", DEFAULT).len(), 2);
}

#[test]
fn a_lower_case_path_is_folded_too_where_rules_have_capitals() {
    let options = PathOptions {
        fold_unchanged: true,
        ..DEFAULT
    };
    assert_eq!(
        paths("/admin/x", options),
        [
            ("/admin/x".to_owned(), false),
            ("/admin/x".to_owned(), true)
        ]
    );
    let case_sensitive = PathOptions {
        case_sensitive: true,
        ..options
    };
    assert_eq!(paths("/admin/x", case_sensitive), plain("/admin/x"));
}

#[test]
fn allowed_encoded_slashes_are_read_both_as_data_and_as_separators() {
    let options = PathOptions {
        encoded_slashes: true,
        ..DEFAULT
    };
    let got: Vec<String> = paths("/files/a%2fb", options)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(got.contains(&"/files/a/b".to_owned()), "{got:?}");
    assert!(got.contains(&"/files/a%2Fb".to_owned()), "{got:?}");
    // Still refused where a reading has dot segments.
    assert_eq!(
        read("/public/..%2fadmin", options).map(|_| ()),
        Err(PathRefused::DotSegments)
    );
    assert_eq!(
        read("/public/..%5cprivate", options).map(|_| ()),
        Err(PathRefused::DotSegments)
    );
}

#[test]
fn slashes_are_collapsed_for_forwarding_only_where_there_is_a_run() {
    assert_eq!(collapse_slashes("/a/b/"), None);
    assert_eq!(
        collapse_slashes("//public/private").as_deref(),
        Some("/public/private")
    );
    assert_eq!(collapse_slashes("///a//b%2F/").as_deref(), Some("/a/b%2F/"));
}

/// The shortcut for plain paths must agree with the long way on every path
/// it takes: all paths of up to six characters over an alphabet holding each
/// character that matters.
#[test]
fn paths_taken_as_plain_are_what_reading_the_long_way_makes_of_them() {
    const ALPHABET: [char; 10] = ['/', 'a', 'A', '.', ';', '%', '2', 'e', '\\', '~'];
    let mut taken = 0;
    for len in 1..=6u32 {
        for mut n in 0..ALPHABET.len().pow(len) {
            let raw: String = (0..len)
                .map(|_| {
                    let c = ALPHABET[n % ALPHABET.len()];
                    n /= ALPHABET.len();
                    c
                })
                .collect();
            for options in [
                DEFAULT,
                PathOptions {
                    case_sensitive: true,
                    ..DEFAULT
                },
            ] {
                if is_plain(&raw, options) {
                    taken += 1;
                    let slow: Vec<(String, bool)> = read_slowly(&raw, options)
                        .unwrap_or_else(|e| panic!("{raw:?}: {e}"))
                        .into_iter()
                        .map(|r| (r.path.into_owned(), r.folded))
                        .collect();
                    assert_eq!(slow, plain(&raw), "{raw:?} {options:?}");
                }
            }
        }
    }
    assert!(taken > 1000, "only {taken} paths taken as plain");
}
