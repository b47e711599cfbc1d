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

/// `msg` with CLI options replaced by the app's field names ("pass --x" → "fill in <field>"),
/// except inside `backquoted` commands, which stay as written.
pub fn gui_words(msg: &str) -> String {
    msg.split('`')
        .enumerate()
        .map(|(i, part)| {
            if i % 2 == 1 {
                return part.to_string();
            }
            let mut out = part.to_string();
            for (flag, field) in FIELDS {
                out = out.replace(&format!("pass {flag}"), &format!("fill in {field} with"));
                out = out.replace(flag, field);
            }
            out
        })
        .collect::<Vec<_>>()
        .join("`")
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
        let quoted = "not a workspace; create one with `saescope extract --workspace D`";
        assert_eq!(gui_words(quoted), quoted);
    }
}
