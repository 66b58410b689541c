//! Comment commands (`sluice plan [UNIT…]`, `sluice apply [UNIT…]`, `sluice unlock UNIT`,
//! `sluice help`) and who may run them.
//!
//! Both are pure: [`parse`] reads a comment body, [`authorize`] judges a collaborator
//! [`Permission`] the client fetched. A comment that does not start with `sluice` is not a
//! command at all (people talk about sluice in PRs); one that does but says nothing sluice knows
//! gets help, with the reason.

use std::fmt;

/// The word a command comment starts with.
pub const KEYWORD: &str = "sluice";

/// Longest unit id accepted in a command; real ones are a few path segments.
const MAX_UNIT_LEN: usize = 256;

/// A stack or app id as a command names it (`prod/ap-southeast-1/network`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitArg(String);

impl UnitArg {
    /// Letters, digits and `-_./@+`, no empty, `.` or `..` segment and no leading `/`: it names a
    /// unit, never a path outside the repository.
    pub fn parse(text: &str) -> Option<Self> {
        let chars_ok = text.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/' | b'@' | b'+')
        });
        let segments_ok = text
            .split('/')
            .all(|s| !s.is_empty() && s != "." && s != "..");
        let ok = !text.is_empty()
            && text.len() <= MAX_UNIT_LEN
            && !text.starts_with('-')
            && chars_ok
            && segments_ok;
        ok.then(|| UnitArg(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UnitArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Plan the named units, or every affected unit when none is named.
    Plan { units: Vec<UnitArg> },
    /// Apply the named units, or every planned unit when none is named.
    Apply { units: Vec<UnitArg> },
    /// Release the lock a unit holds for this PR.
    Unlock { unit: UnitArg },
    /// Show the usage; `reason` says what was wrong when help was not asked for.
    Help { reason: Option<HelpReason> },
}

/// Why a command comment was answered with help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HelpReason {
    /// `sluice` alone.
    NoCommand,
    UnknownCommand(String),
    /// `sluice unlock` without a unit.
    MissingUnit,
    /// `sluice unlock a b`: one lock at a time.
    TooManyUnits,
    /// A unit argument that is not a unit id (`../x`, `--all`).
    BadUnit(String),
}

impl fmt::Display for HelpReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HelpReason::NoCommand => write!(f, "`{KEYWORD}` needs a command"),
            HelpReason::UnknownCommand(c) => write!(f, "unknown command `{c}`"),
            HelpReason::MissingUnit => f.write_str("`unlock` needs the unit to unlock"),
            HelpReason::TooManyUnits => f.write_str("`unlock` takes exactly one unit"),
            HelpReason::BadUnit(u) => write!(f, "`{u}` is not a unit id"),
        }
    }
}

/// The usage text a help reply shows.
pub const USAGE: &str = "\
sluice plan [UNIT…]    plan the named units (all affected units when none is named)
sluice apply [UNIT…]   apply the named planned units
sluice unlock UNIT     release the lock this pull request holds on UNIT
sluice help            show this help";

/// The command in a comment body, if it is one: its first non-blank line must start with the
/// word `sluice`. Later lines are free text (a reason for the reviewer, say).
pub fn parse(body: &str) -> Option<Command> {
    let line = body.lines().find(|l| !l.trim().is_empty())?;
    let mut words = line.split_whitespace();
    if words.next()? != KEYWORD {
        return None;
    }
    let Some(verb) = words.next() else {
        return Some(help(HelpReason::NoCommand));
    };
    let args: Vec<&str> = words.collect();
    let units = match args
        .iter()
        .map(|a| UnitArg::parse(a).ok_or(*a))
        .collect::<Result<Vec<_>, _>>()
    {
        Ok(units) => units,
        Err(bad) => return Some(help(HelpReason::BadUnit(bad.to_owned()))),
    };
    Some(match verb {
        "plan" => Command::Plan { units },
        "apply" => Command::Apply { units },
        "unlock" => {
            let mut units = units.into_iter();
            match (units.next(), units.next()) {
                (Some(unit), None) => Command::Unlock { unit },
                (None, _) => help(HelpReason::MissingUnit),
                (Some(_), Some(_)) => help(HelpReason::TooManyUnits),
            }
        }
        "help" => Command::Help { reason: None },
        other => help(HelpReason::UnknownCommand(other.to_owned())),
    })
}

fn help(reason: HelpReason) -> Command {
    Command::Help {
        reason: Some(reason),
    }
}

/// The canonical comment for a command (what [`parse`] reads back to the same command).
impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (verb, units): (&str, &[UnitArg]) = match self {
            Command::Plan { units } => ("plan", units),
            Command::Apply { units } => ("apply", units),
            Command::Unlock { unit } => ("unlock", std::slice::from_ref(unit)),
            Command::Help { .. } => ("help", &[]),
        };
        write!(f, "{KEYWORD} {verb}")?;
        for unit in units {
            write!(f, " {unit}")?;
        }
        Ok(())
    }
}

/// A collaborator's role on a repository, highest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    Admin,
    Maintain,
    Write,
    Triage,
    Read,
    None,
}

impl Permission {
    /// From GitHub's "get repository permissions for a user" answer. `role_name` is the precise
    /// role (`maintain`, `triage`, or a custom role's name); `permission` is the legacy level
    /// (`admin`, `write`, `read`, `none`) a custom role maps onto, so it decides when the role
    /// name is not one of the built-in five. Anything unrecognised is `None`: fail closed.
    pub fn from_api(permission: &str, role_name: Option<&str>) -> Permission {
        let parse = |s: &str| match s {
            "admin" => Some(Permission::Admin),
            "maintain" => Some(Permission::Maintain),
            "write" => Some(Permission::Write),
            "triage" => Some(Permission::Triage),
            "read" => Some(Permission::Read),
            "none" => Some(Permission::None),
            _ => None,
        };
        role_name
            .and_then(parse)
            .or_else(|| parse(permission))
            .unwrap_or(Permission::None)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Admin => "admin",
            Permission::Maintain => "maintain",
            Permission::Write => "write",
            Permission::Triage => "triage",
            Permission::Read => "read",
            Permission::None => "none",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A command refused for lack of permission; its `Display` is the reply to post.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "@{login} has `{permission}` permission on this repository; sluice commands need `write`, `maintain` or `admin`"
)]
pub struct Refused {
    pub login: String,
    pub permission: Permission,
}

/// Whether `login`, holding `permission`, may run sluice commands: write access or above.
pub fn authorize(login: &str, permission: Permission) -> Result<(), Refused> {
    if permission <= Permission::Write {
        Ok(())
    } else {
        Err(Refused {
            login: login.to_owned(),
            permission,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn units(names: &[&str]) -> Vec<UnitArg> {
        names.iter().map(|n| UnitArg::parse(n).unwrap()).collect()
    }

    #[test]
    fn parses_each_command() {
        assert_eq!(parse("sluice plan"), Some(Command::Plan { units: vec![] }));
        assert_eq!(
            parse("  sluice   plan prod/network  prod/app@v2 \nbecause the module moved"),
            Some(Command::Plan {
                units: units(&["prod/network", "prod/app@v2"])
            })
        );
        assert_eq!(
            parse("\n\nsluice apply prod/network"),
            Some(Command::Apply {
                units: units(&["prod/network"])
            })
        );
        assert_eq!(
            parse("sluice unlock prod/network"),
            Some(Command::Unlock {
                unit: UnitArg::parse("prod/network").unwrap()
            })
        );
        assert_eq!(parse("sluice help"), Some(Command::Help { reason: None }));
    }

    #[test]
    fn mistakes_get_help_with_the_reason() {
        let reason = |body: &str| match parse(body) {
            Some(Command::Help { reason: Some(r) }) => r,
            other => panic!("{body}: {other:?}"),
        };
        assert_eq!(reason("sluice"), HelpReason::NoCommand);
        assert_eq!(
            reason("sluice destroy everything"),
            HelpReason::UnknownCommand("destroy".into())
        );
        assert_eq!(reason("sluice unlock"), HelpReason::MissingUnit);
        assert_eq!(reason("sluice unlock a b"), HelpReason::TooManyUnits);
        assert_eq!(
            reason("sluice plan ../../etc"),
            HelpReason::BadUnit("../../etc".into())
        );
        assert_eq!(
            reason("sluice plan --all"),
            HelpReason::BadUnit("--all".into())
        );
        assert_eq!(
            reason("sluice apply /abs"),
            HelpReason::BadUnit("/abs".into())
        );
    }

    #[test]
    fn other_comments_are_not_commands() {
        for body in [
            "",
            "  \n ",
            "LGTM",
            "sluicer plan",
            "Sluice plan",
            "please run sluice plan",
            "`sluice plan`",
        ] {
            assert_eq!(parse(body), None, "{body:?}");
        }
    }

    #[test]
    fn permission_rule() {
        for ok in [Permission::Admin, Permission::Maintain, Permission::Write] {
            assert_eq!(authorize("alice", ok), Ok(()));
        }
        for refused in [Permission::Triage, Permission::Read, Permission::None] {
            let err = authorize("mallory", refused).unwrap_err();
            let reply = err.to_string();
            assert!(reply.contains("@mallory"), "{reply}");
            assert!(reply.contains(&format!("`{refused}`")), "{reply}");
        }
    }

    #[test]
    fn permission_from_the_api_prefers_the_role_and_fails_closed() {
        assert_eq!(
            Permission::from_api("write", Some("maintain")),
            Permission::Maintain
        );
        assert_eq!(
            Permission::from_api("read", Some("triage")),
            Permission::Triage
        );
        // A custom role falls back to the legacy level it is based on.
        assert_eq!(
            Permission::from_api("write", Some("deployer")),
            Permission::Write
        );
        assert_eq!(Permission::from_api("admin", None), Permission::Admin);
        assert_eq!(Permission::from_api("owner?", Some("?")), Permission::None);
    }

    fn unit_strategy() -> impl Strategy<Value = UnitArg> {
        "[a-z0-9][a-z0-9_.@+-]{0,8}(/[a-z0-9][a-z0-9_.@+-]{0,8}){0,3}"
            .prop_filter_map("segments may not be . or ..", |s| UnitArg::parse(&s))
    }

    fn command_strategy() -> impl Strategy<Value = Command> {
        let units = || proptest::collection::vec(unit_strategy(), 0..4);
        prop_oneof![
            units().prop_map(|units| Command::Plan { units }),
            units().prop_map(|units| Command::Apply { units }),
            unit_strategy().prop_map(|unit| Command::Unlock { unit }),
            Just(Command::Help { reason: None }),
        ]
    }

    proptest! {
        #[test]
        fn display_round_trips(cmd in command_strategy()) {
            prop_assert_eq!(parse(&cmd.to_string()), Some(cmd));
        }

        #[test]
        fn whitespace_and_trailing_lines_do_not_matter(
            cmd in command_strategy(),
            pad in "[ \t]{1,3}",
            lead in "(\n[ \t]*){0,3}",
            tail in "(\n[^\n]{0,20}){0,3}",
        ) {
            let spaced = cmd.to_string().replace(' ', &pad);
            let body = format!("{lead}{pad}{spaced}{pad}{tail}");
            prop_assert_eq!(parse(&body), Some(cmd));
        }

        #[test]
        fn never_panics_and_only_claims_sluice_comments(body in "\\PC{0,200}") {
            if let Some(cmd) = parse(&body) {
                let first = body.lines().find(|l| !l.trim().is_empty()).unwrap();
                prop_assert_eq!(first.split_whitespace().next(), Some(KEYWORD));
                if let Command::Plan { units } | Command::Apply { units } = &cmd {
                    for u in units {
                        prop_assert!(!u.as_str().split('/').any(|s| s == ".."));
                    }
                }
            }
        }

        #[test]
        fn only_write_and_above_may_run(level in prop_oneof![
            Just(Permission::Admin), Just(Permission::Maintain), Just(Permission::Write),
            Just(Permission::Triage), Just(Permission::Read), Just(Permission::None)
        ]) {
            let allowed = matches!(level, Permission::Admin | Permission::Maintain | Permission::Write);
            prop_assert_eq!(authorize("u", level).is_ok(), allowed);
        }
    }
}
