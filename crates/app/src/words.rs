//! Library errors speak the CLI's language ("pass --model-config FILE.json"); in the app the
//! same message names the field to fill in instead.

/// CLI options and the form fields that set them, longest option first so that `--model` does
/// not match inside `--model-config`.
const FIELDS: [(&str, &str); 8] = [
    // The device refusal names both ways out; in the app they are entries of one menu.
    (
        "use --device cpu or --device auto",
        "choose cpu or auto in the status bar's Device menu",
    ),
    ("--model-config", "the Model config (.pth) field"),
    ("--pos-interpolation", "the DINOv2 positions choice"),
    ("--workspace", "the Workspace folder field"),
    ("--images", "the Image folder field"),
    ("--model", "the Model field"),
    ("--layer", "the Layer field"),
    ("--d-sae", "the features field"),
];

/// Backquoted CLI commands that the app does with a button, and that button: (command, whether
/// arguments may follow, button).
const COMMANDS: [(&str, bool, &str); 3] = [
    (
        "saescope extract --workspace",
        true,
        "the New workspace form on the start page",
    ),
    (
        "saescope train --workspace",
        true,
        "Train SAE on the explorer's Features tab",
    ),
    (
        "saescope index",
        false,
        "Build index on the explorer's Features tab",
    ),
];

/// `msg` with CLI options replaced by the app's field names ("pass --x" → "fill in <field>");
/// a `backquoted` command becomes the app's button for it, or stays as written when it has none.
pub fn gui_words(msg: &str) -> String {
    let parts: Vec<&str> = msg.split('`').collect();
    let mut out = String::new();
    for (i, part) in parts.iter().enumerate() {
        if i % 2 == 0 {
            out.push_str(&with_field_names(part));
            continue;
        }
        let button = COMMANDS.iter().find(|(cmd, args, _)| {
            part.strip_prefix(cmd)
                .is_some_and(|rest| rest.is_empty() || (*args && rest.starts_with(' ')))
        });
        match button {
            Some((_, _, button)) => out.push_str(button),
            None => {
                out.push('`');
                out.push_str(part);
                // An unclosed quote stays unclosed.
                if i + 1 < parts.len() {
                    out.push('`');
                }
            }
        }
    }
    out
}

fn with_field_names(text: &str) -> String {
    let mut out = text.to_string();
    for (flag, field) in FIELDS {
        out = out.replace(&format!("pass {flag}"), &format!("fill in {field} with"));
        out = out.replace(flag, field);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cli_options_become_the_fields_to_fill_in() {
        assert_eq!(
            gui_words(
                "no heads in the checkpoint; pass --model-config FILE.json or put x.json beside it"
            ),
            "no heads in the checkpoint; fill in the Model config (.pth) field with FILE.json or put x.json beside it"
        );
        assert_eq!(
            gui_words("layer 9 does not exist; check --layer"),
            "layer 9 does not exist; check the Layer field"
        );
        assert_eq!(
            gui_words("device cuda:0 cannot be used: no driver; use --device cpu or --device auto"),
            "device cuda:0 cannot be used: no driver; choose cpu or auto in the status bar's Device menu"
        );
        assert_eq!(gui_words("nothing to translate"), "nothing to translate");
        assert_eq!(
            gui_words("not a workspace; create one with `saescope extract --workspace D`"),
            "not a workspace; create one with the New workspace form on the start page"
        );
        assert_eq!(
            gui_words("no feature index yet for this SAE; run `saescope index`"),
            "no feature index yet for this SAE; run Build index on the explorer's Features tab"
        );
        // Commands the app has no button for stay as written, and so does an unclosed quote.
        for quoted in [
            "run `saescope ood --workspace W` first",
            "corrupt; run `saescope index --rebuild` to rebuild it",
            "odd `quote",
        ] {
            assert_eq!(gui_words(quoted), quoted);
        }
    }
}
