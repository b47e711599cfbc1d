//! `saescope tree`: Ontology: a tree over features and class trees (SAE profiles and raw
//! activations), compared with a taxonomy (e.g. WordNet) when given. Written to
//! WS/saes/<name>/ontology.json.

use super::*;

#[derive(Args)]
pub struct TreeArgs {
    #[command(flatten)]
    target: SaeArgs,
    /// Taxonomy: networkx node-link JSON or "parent child" lines (e.g. WordNet).
    #[arg(long, requires = "class_ids")]
    taxonomy: Option<PathBuf>,
    /// One taxonomy id per class, in sorted class-folder order (e.g. cifar10-wnids.txt).
    #[arg(long, requires = "taxonomy")]
    class_ids: Option<PathBuf>,
}

pub fn run(a: TreeArgs, ctx: &Ctx) -> Result<()> {
    let TreeArgs {
        target: SaeArgs { workspace, sae },
        taxonomy,
        class_ids,
    } = a;
    let taxonomy = taxonomy.zip(class_ids).map(|(taxonomy, class_ids)| {
        ops::analysis::ontology::TaxonomyInput {
            taxonomy,
            class_ids,
        }
    });
    let (_, report) = ops::analyse::tree(
        &ops::analyse::TreeRequest {
            workspace,
            sae,
            taxonomy,
        },
        &ops::job::Job::default(),
    )?;
    emit_pretty(ctx, &report)
}
