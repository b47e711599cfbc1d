//! The app's names for what library messages tell the user to change: the form field for an
//! option, the button for a command. The library writes its messages as typed parts
//! ([`crate::fix`]); the CLI names the same parts as flags and command lines.

use crate::Error;
use crate::fix::{Command, Opt, Words};

/// The app's words for options and commands.
pub struct AppWords;

impl AppWords {
    /// The control that sets `option`, or None when the app has none.
    fn field(option: Opt) -> Option<&'static str> {
        Some(match option {
            Opt::Workspace => "the Workspace folder field",
            Opt::Images => "the Image folder field",
            Opt::Model => "the Model field",
            Opt::ModelConfig => "the Model config (.pth) field",
            Opt::Layer => "the Layer field",
            Opt::PosInterpolation => "the DINOv2 positions choice",
            Opt::DSae => "the features field",
            Opt::K => "the k field",
            Opt::Device => "the status bar's Device menu",
            Opt::Sae => "the SAE table (Use)",
            Opt::Feature => "the Feature sliders",
            Opt::Features => "the Features field",
            _ => return None,
        })
    }
}

impl Words for AppWords {
    fn option(&self, option: Opt) -> String {
        match Self::field(option) {
            Some(field) => field.to_string(),
            // No control in the app: say where the option is.
            None => format!("the command line's {}", option.flag()),
        }
    }

    fn value(&self, option: Opt, value: &str) -> String {
        match Self::field(option) {
            Some(field) => format!("{value} in {field}"),
            None => format!("the command line's {} {value}", option.flag()),
        }
    }

    fn values(&self, option: Opt, values: &[String]) -> String {
        self.value(option, &values.join(" or "))
    }

    fn command(&self, command: &Command) -> String {
        match command {
            Command::Extract(_) => "the New workspace form on the start page".into(),
            Command::Train(_) => "Train SAE on the explorer's Features tab".into(),
            Command::Index { rebuild: false } => {
                "Build index on the explorer's Features tab".into()
            }
            Command::UseSae => "Use in the workspace's SAE table".into(),
            // The app has no button for these: the command line does them.
            other @ (Command::Index { rebuild: true } | Command::SubmitResume) => {
                format!("`{}`", other.line())
            }
        }
    }
}

/// An error in the app's words.
pub fn shown(e: &Error) -> String {
    e.render(&AppWords)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixable;

    #[test]
    fn options_and_commands_become_the_fields_and_buttons() {
        let e = fixable!(
            ["layer 9 does not exist"],
            [
                "check ",
                Opt::Layer,
                " or run ",
                Command::Index { rebuild: false }
            ]
        );
        assert_eq!(
            shown(&e),
            "layer 9 does not exist; check the Layer field or run Build index on the explorer's Features tab"
        );
        let e = fixable!(
            ["device cuda:0 cannot be used"],
            ["choose ", Opt::Device.either(&["cpu", "auto"])]
        );
        assert_eq!(
            shown(&e),
            "device cuda:0 cannot be used; choose cpu or auto in the status bar's Device menu"
        );
        assert_eq!(
            e.to_string(),
            "device cuda:0 cannot be used; choose --device cpu or --device auto"
        );
        // An option the app has no control for is named as the command line's; so is a command
        // it has no button for.
        let e = fixable!(
            ["busy"],
            [
                "pass ",
                Opt::Restart,
                " or run ",
                Command::Index { rebuild: true }
            ]
        );
        assert_eq!(
            shown(&e),
            "busy; pass the command line's --restart or run `saescope index --rebuild`"
        );
        // The garbled "Use another the Workspace folder field folder" of string rewriting.
        let e = fixable!(
            ["w is in use"],
            ["give another folder with ", Opt::Workspace]
        );
        assert_eq!(
            shown(&e),
            "w is in use; give another folder with the Workspace folder field"
        );
        // Messages without typed parts are shown as they are.
        assert_eq!(shown(&Error::Invalid("plain".into())), "plain");
    }
}
