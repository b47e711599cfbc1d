//! Messages that name what the user can change: an option, a command, a file. The library
//! writes them once, as typed parts; each front end names the parts its own way (the CLI a flag
//! or a command line, the app the field or button that does the same), so nothing rewrites
//! message text by string matching.

use std::path::PathBuf;

/// Declares the options that messages name: their CLI flag and the commands that take them.
macro_rules! options {
    ($($v:ident => $flag:literal in [$($cmd:literal),*];)+) => {
        /// An option of a use case, as messages name it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Opt { $($v),+ }

        impl Opt {
            /// Every option, for the test that checks each against the CLI's definitions.
            pub const ALL: &'static [Opt] = &[$(Opt::$v),+];

            /// The long flag that sets it on the command line.
            pub fn flag(self) -> &'static str {
                match self { $(Opt::$v => $flag),+ }
            }

            /// The option given `value` ("--device cpu"), as a message part.
            pub fn with(self, value: impl Into<String>) -> Part {
                Part::Value(self, value.into())
            }

            /// The option given one of `values`, as a message part.
            pub fn either(self, values: &[&str]) -> Part {
                Part::Values(self, values.iter().map(|v| v.to_string()).collect())
            }

            /// The commands ("train", "steer generate") that take it; empty for every command.
            pub fn commands(self) -> &'static [&'static str] {
                match self { $(Opt::$v => &[$($cmd),*]),+ }
            }
        }
    };
}

options! {
    Arch => "--arch" in ["train"];
    Batch => "--batch" in ["extract", "train", "eval"];
    ClsWeight => "--cls-weight" in ["train"];
    DIn => "--d-in" in [];
    DSae => "--d-sae" in ["train"];
    Device => "--device" in [];
    Dtype => "--dtype" in ["extract"];
    Feature => "--feature" in ["steer generate"];
    Features => "--features" in ["heatmap", "intervene", "export"];
    Force => "--force" in ["import-labels"];
    Guidance => "--guidance" in ["steer generate"];
    FromClasses => "--from-classes" in ["label"];
    Images => "--images" in ["extract", "train"];
    K => "--k" in ["train"];
    L1 => "--l1" in ["train"];
    L0Coeff => "--l0-coeff" in ["train"];
    L2 => "--l2" in ["probe"];
    Layer => "--layer" in ["extract"];
    Lr => "--lr" in ["train"];
    MaxHours => "--max-hours" in ["train", "sweep", "steer train-sae"];
    Model => "--model" in ["extract"];
    ModelConfig => "--model-config" in ["extract"];
    Name => "--name" in ["train", "sweep"];
    Ood => "--ood" in ["ood"];
    Pipeline => "--pipeline" in ["steer generate"];
    Prefixes => "--prefixes" in ["train"];
    PosInterpolation => "--pos-interpolation" in ["extract"];
    PreviewDecoder => "--preview-decoder" in ["steer generate"];
    ProbeLatents => "--probe-latents" in ["eval"];
    Rebuild => "--rebuild" in ["index"];
    SampleRows => "--sample-rows" in ["eval"];
    Ridge => "--ridge" in ["ood"];
    Spliced => "--spliced" in ["probe"];
    Steps => "--steps" in [];
    Task => "--task" in ["extract", "index", "ood"];
    Tasks => "--tasks" in ["extract", "index", "ood", "submit", "merge"];
    TopLift => "--top-lift" in ["intervene"];
    Restart => "--restart" in ["train"];
    Sae => "--sae" in [];
    ShardImages => "--shard-images" in ["extract"];
    Size => "--size" in ["steer generate"];
    Tokens => "--tokens" in ["extract", "train", "sweep"];
    TopN => "--top-n" in ["index"];
    Workspace => "--workspace" in [];
}

/// A command that a message tells the user to run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// Create or complete a workspace's activations (for the folder, when the message knows it).
    Extract(Option<PathBuf>),
    /// Train an SAE in the workspace.
    Train(PathBuf),
    /// Build the feature index; `rebuild` starts it over.
    Index { rebuild: bool },
    /// Make one of the workspace's SAEs the active one.
    UseSae,
    /// Submit a split job's unfinished tasks again, then its merge.
    SubmitResume,
}

impl Command {
    /// Every kind of command, for the test that checks each command line against the CLI.
    pub fn examples() -> Vec<Command> {
        vec![
            Command::Extract(None),
            Command::Extract(Some("W".into())),
            Command::Train("W".into()),
            Command::Index { rebuild: false },
            Command::Index { rebuild: true },
            Command::UseSae,
            Command::SubmitResume,
        ]
    }

    /// The command line that does it.
    pub fn line(&self) -> String {
        match self {
            Command::Extract(None) => "saescope extract".into(),
            Command::Extract(Some(w)) => format!("saescope extract --workspace {}", w.display()),
            Command::Train(w) => format!("saescope train --workspace {}", w.display()),
            Command::Index { rebuild: false } => "saescope index".into(),
            Command::Index { rebuild: true } => "saescope index --rebuild".into(),
            Command::UseSae => "saescope use-sae".into(),
            Command::SubmitResume => "saescope submit --resume".into(),
        }
    }
}

/// One piece of a message.
#[derive(Clone, Debug, PartialEq)]
pub enum Part {
    Text(String),
    Opt(Opt),
    /// An option with a value to give it.
    Value(Opt, String),
    /// An option with a choice of values ("cpu or auto").
    Values(Opt, Vec<String>),
    Run(Command),
    File(PathBuf),
}

impl From<&str> for Part {
    fn from(s: &str) -> Self {
        Part::Text(s.to_string())
    }
}
impl From<String> for Part {
    fn from(s: String) -> Self {
        Part::Text(s)
    }
}
impl From<Opt> for Part {
    fn from(o: Opt) -> Self {
        Part::Opt(o)
    }
}
impl From<Command> for Part {
    fn from(c: Command) -> Self {
        Part::Run(c)
    }
}
impl From<PathBuf> for Part {
    fn from(p: PathBuf) -> Self {
        Part::File(p)
    }
}
impl From<&PathBuf> for Part {
    fn from(p: &PathBuf) -> Self {
        Part::File(p.clone())
    }
}
impl From<&std::path::Path> for Part {
    fn from(p: &std::path::Path) -> Self {
        Part::File(p.to_path_buf())
    }
}

/// How a front end names options and commands.
pub trait Words {
    fn option(&self, option: Opt) -> String;
    fn value(&self, option: Opt, value: &str) -> String;
    /// The option given one of `values`.
    fn values(&self, option: Opt, values: &[String]) -> String;
    fn command(&self, command: &Command) -> String;
}

/// The command line's words: `--flag` and `` `saescope …` ``.
pub struct CliWords;

impl Words for CliWords {
    fn option(&self, option: Opt) -> String {
        option.flag().to_string()
    }
    fn value(&self, option: Opt, value: &str) -> String {
        format!("{} {value}", option.flag())
    }
    fn values(&self, option: Opt, values: &[String]) -> String {
        let each: Vec<String> = values.iter().map(|v| self.value(option, v)).collect();
        each.join(" or ")
    }
    fn command(&self, command: &Command) -> String {
        format!("`{}`", command.line())
    }
}

/// What went wrong and what to do about it, each as typed parts.
#[derive(Clone, Debug, PartialEq)]
pub struct Advice {
    pub problem: Vec<Part>,
    pub fix: Vec<Part>,
}

impl Advice {
    /// The message in a front end's words: "problem; fix".
    pub fn render(&self, words: &dyn Words) -> String {
        let mut out = render_parts(&self.problem, words);
        if !self.fix.is_empty() {
            out.push_str("; ");
            out.push_str(&render_parts(&self.fix, words));
        }
        out
    }

    /// The options the message names, problem and fix.
    pub fn options(&self) -> impl Iterator<Item = Opt> + '_ {
        self.problem
            .iter()
            .chain(&self.fix)
            .filter_map(|p| match p {
                Part::Opt(o) | Part::Value(o, _) | Part::Values(o, _) => Some(*o),
                _ => None,
            })
    }
}

fn render_parts(parts: &[Part], words: &dyn Words) -> String {
    parts
        .iter()
        .map(|p| match p {
            Part::Text(t) => t.clone(),
            Part::Opt(o) => words.option(*o),
            Part::Value(o, v) => words.value(*o, v),
            Part::Values(o, v) => words.values(*o, v),
            Part::Run(c) => words.command(c),
            Part::File(f) => f.display().to_string(),
        })
        .collect()
}

/// "`option` must be at least 1 (got 0)".
pub fn at_least_one(option: Opt) -> crate::Error {
    crate::fixable!([option, " must be at least 1 (got 0)"])
}

/// The parts of a message: `parts!["layer ", n.to_string(), " does not exist; check ", Opt::Layer]`.
#[macro_export]
macro_rules! parts {
    ($($p:expr),* $(,)?) => { vec![$($crate::fix::Part::from($p)),*] };
}

/// An [`Error::Fixable`](crate::Error::Fixable):
/// `fixable!([problem parts…], [fix parts…])`, or with the problem alone.
#[macro_export]
macro_rules! fixable {
    ([$($p:expr),* $(,)?], [$($f:expr),* $(,)?]) => {
        $crate::Error::Fixable($crate::fix::Advice {
            problem: $crate::parts![$($p),*],
            fix: $crate::parts![$($f),*],
        })
    };
    ([$($p:expr),* $(,)?]) => {
        $crate::Error::Fixable($crate::fix::Advice { problem: $crate::parts![$($p),*], fix: vec![] })
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fields;
    impl Words for Fields {
        fn option(&self, o: Opt) -> String {
            format!("the {o:?} field")
        }
        fn value(&self, o: Opt, v: &str) -> String {
            format!("{v} in the {o:?} field")
        }
        fn values(&self, o: Opt, v: &[String]) -> String {
            format!("{} in the {o:?} field", v.join(" or "))
        }
        fn command(&self, c: &Command) -> String {
            format!("the {c:?} button")
        }
    }

    #[test]
    fn each_front_end_names_the_parts_its_own_way() {
        let e = fixable!(
            ["layer 9 does not exist in ", PathBuf::from("m")],
            ["check ", Opt::Layer, " or run ", Command::UseSae]
        );
        let crate::Error::Fixable(a) = &e else {
            panic!("not fixable")
        };
        assert_eq!(
            e.to_string(),
            "layer 9 does not exist in m; check --layer or run `saescope use-sae`"
        );
        assert_eq!(
            a.render(&Fields),
            "layer 9 does not exist in m; check the Layer field or run the UseSae button"
        );
        assert_eq!(a.options().collect::<Vec<_>>(), vec![Opt::Layer]);
    }
}
