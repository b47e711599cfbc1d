//! Ontology trees: average-linkage dendrograms over SAE features or classes, and their comparison
//! with a reference taxonomy such as WordNet (cophenetic correlation, top-split purity).
//!
//! Everything here is a pure algorithm; the only I/O is reading taxonomy files.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use crate::error::{Error, Result};

/// One agglomeration: clusters `a` and `b` (ids < n are leaves; n + i is the cluster made by merge i)
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Merge {
    pub a: usize,
    pub b: usize,
    pub height: f32,
    pub size: usize,
}

/// A binary tree over `n` leaves: n - 1 merges with non-decreasing heights (scipy's linkage layout).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Dendrogram {
    pub n: usize,
    pub merges: Vec<Merge>,
}

/// Average-linkage (UPGMA) agglomerative clustering on a full symmetric n×n distance matrix
/// (row-major, zero diagonal).
///
/// Uses the nearest-neighbour chain with Lance–Williams updates: O(n²) memory (one working copy of
/// the matrix) and O(n²) time. Merges come back sorted by height with scipy's cluster numbering.
/// Ties are broken deterministically (lowest index first).
pub fn average_linkage(dist: &[f32], n: usize) -> Result<Dendrogram> {
    if n == 0 {
        return Err(Error::Invalid(
            "average_linkage: need at least one point to cluster".into(),
        ));
    }
    if dist.len() != n * n {
        return Err(Error::Invalid(format!(
            "average_linkage: distance matrix has {} entries but {n}×{n} = {} were expected",
            dist.len(),
            n * n
        )));
    }
    // Working copy. Removed clusters and the diagonal hold +∞, so a plain row minimum finds the
    // nearest active neighbour without consulting an "active" list.
    let mut work = dist.to_vec();
    for i in 0..n {
        for j in i + 1..n {
            let (u, l) = (dist[i * n + j], dist[j * n + i]);
            if !u.is_finite() || !l.is_finite() {
                return Err(Error::Invalid(format!(
                    "average_linkage: distance ({i}, {j}) is not finite"
                )));
            }
            if (u - l).abs() > 1e-4 * u.abs().max(1.0) {
                return Err(Error::Invalid(format!(
                    "average_linkage: distance matrix is not symmetric at ({i}, {j}): {u} vs {l}"
                )));
            }
            // Use the upper triangle everywhere so tiny asymmetries cannot matter.
            work[j * n + i] = u;
        }
        work[i * n + i] = f32::INFINITY;
    }

    let mut active = vec![true; n];
    let mut size = vec![1usize; n];
    // Height of the cluster now held in each slot, to keep recorded heights monotone even if
    // rounding nudged an average below a child's height.
    let mut slot_height = vec![0f32; n];
    // Merges in the order the chain finds them, by slot: (slot a, slot b, height, size).
    let mut raw: Vec<(usize, usize, f32, usize)> = Vec::with_capacity(n.saturating_sub(1));
    let mut chain: Vec<usize> = Vec::with_capacity(n);
    let mut first_active = 0;

    for _ in 1..n {
        if chain.is_empty() {
            while !active[first_active] {
                first_active += 1;
            }
            chain.push(first_active);
        }
        // Grow the chain until its last two elements are mutual nearest neighbours.
        let (a, b, d_ab) = loop {
            let a = chain[chain.len() - 1];
            let prev = (chain.len() >= 2).then(|| chain[chain.len() - 2]);
            let row = &work[a * n..(a + 1) * n];
            let (mut b, mut best) = (usize::MAX, f32::INFINITY);
            for (k, &v) in row.iter().enumerate() {
                if v < best {
                    best = v;
                    b = k;
                }
            }
            // On a tie, stepping back along the chain is what guarantees it terminates.
            if let Some(p) = prev
                && row[p] == best
            {
                b = p;
            }
            if Some(b) == prev {
                break (a, b, best);
            }
            chain.push(b);
        };
        chain.truncate(chain.len() - 2);

        // The merged cluster lives on in the lower slot; the other slot is retired.
        let (keep, gone) = (a.min(b), a.max(b));
        let (sa, sb) = (size[a] as f64, size[b] as f64);
        for k in 0..n {
            if !active[k] || k == a || k == b {
                continue;
            }
            // Lance–Williams for average linkage: size-weighted mean of the two old distances.
            // f64 keeps the mean from rounding below the smaller of the two.
            let v =
                ((sa * work[a * n + k] as f64 + sb * work[b * n + k] as f64) / (sa + sb)) as f32;
            work[keep * n + k] = v;
            work[k * n + keep] = v;
        }
        active[gone] = false;
        for k in 0..n {
            work[gone * n + k] = f32::INFINITY;
            work[k * n + gone] = f32::INFINITY;
        }
        let height = d_ab.max(slot_height[a]).max(slot_height[b]);
        size[keep] = size[a] + size[b];
        slot_height[keep] = height;
        raw.push((a, b, height, size[keep]));
    }

    // The chain finds merges out of height order. A stable sort keeps every child before its
    // parent (heights are monotone), then union–find turns slots into scipy's cluster ids.
    raw.sort_by(|x, y| x.2.total_cmp(&y.2));
    let mut parent: Vec<usize> = (0..2 * n - 1).collect();
    fn find(parent: &mut [usize], mut x: usize) -> usize {
        while parent[x] != x {
            parent[x] = parent[parent[x]];
            x = parent[x];
        }
        x
    }
    let mut merges = Vec::with_capacity(raw.len());
    for (i, &(sa, sb, height, size)) in raw.iter().enumerate() {
        let (ca, cb) = (find(&mut parent, sa), find(&mut parent, sb));
        parent[ca] = n + i;
        parent[cb] = n + i;
        merges.push(Merge {
            a: ca.min(cb),
            b: ca.max(cb),
            height,
            size,
        });
    }
    Ok(Dendrogram { n, merges })
}

impl Dendrogram {
    /// Leaves under node id (leaf or cluster), in a stable left-to-right order (`a` before `b`).
    /// Empty for an id outside the tree.
    pub fn leaves(&self, node: usize) -> Vec<usize> {
        if node >= self.n + self.merges.len() {
            return Vec::new();
        }
        let mut out = Vec::new();
        let mut stack = vec![node];
        while let Some(x) = stack.pop() {
            match self.children(x) {
                // Push `b` first so `a` is visited first.
                Some((a, b)) => {
                    stack.push(b);
                    stack.push(a);
                }
                None => out.push(x),
            }
        }
        out
    }

    /// Root id (n + merges.len() - 1, or 0 when n == 1).
    pub fn root(&self) -> usize {
        if self.merges.is_empty() {
            0
        } else {
            self.n + self.merges.len() - 1
        }
    }

    /// The two children of a cluster id (None for a leaf or an id outside the tree).
    pub fn children(&self, node: usize) -> Option<(usize, usize)> {
        let m = self.merges.get(node.checked_sub(self.n)?)?;
        Some((m.a, m.b))
    }

    /// Full n×n cophenetic distance matrix (height of the merge joining i and j; 0 on the diagonal).
    pub fn cophenetic(&self) -> Vec<f32> {
        let n = self.n;
        let mut out = vec![0f32; n * n];
        // Members of every cluster so far; each merge fills in exactly the pairs it joins, so the
        // total work is O(n²).
        let mut members: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
        for m in &self.merges {
            let left = std::mem::take(&mut members[m.a]);
            let right = std::mem::take(&mut members[m.b]);
            for &x in &left {
                for &y in &right {
                    out[x * n + y] = m.height;
                    out[y * n + x] = m.height;
                }
            }
            let mut joined = left;
            joined.extend(right);
            members.push(joined);
        }
        out
    }

    /// Leaves of the root's two children. For a single leaf: that leaf and an empty side.
    pub fn top_split(&self) -> (Vec<usize>, Vec<usize>) {
        match self.children(self.root()) {
            Some((a, b)) => (self.leaves(a), self.leaves(b)),
            None => (self.leaves(self.root()), Vec::new()),
        }
    }

    /// Checks that a dendrogram (e.g. one read back from JSON) is well formed: n - 1 merges, each
    /// joining two existing, not yet merged clusters, sizes adding up and heights non-decreasing.
    /// The other methods assume this.
    pub fn validate(&self) -> Result<()> {
        let bad = |why: String| Err(Error::Invalid(format!("dendrogram: {why}")));
        if self.n == 0 || self.merges.len() != self.n - 1 {
            return bad(format!(
                "{} merges for {} leaves (expected n - 1 and n ≥ 1)",
                self.merges.len(),
                self.n
            ));
        }
        let mut used = vec![false; 2 * self.n - 1];
        let mut sizes = vec![1usize; self.n];
        let mut last = f32::NEG_INFINITY;
        for (i, m) in self.merges.iter().enumerate() {
            let id = self.n + i;
            if m.a >= id || m.b >= id || m.a == m.b || used[m.a] || used[m.b] {
                return bad(format!(
                    "merge {i} joins invalid clusters {} and {}",
                    m.a, m.b
                ));
            }
            if m.size != sizes[m.a] + sizes[m.b] {
                return bad(format!(
                    "merge {i} has size {} but joins {} leaves",
                    m.size,
                    sizes[m.a] + sizes[m.b]
                ));
            }
            if m.height.is_nan() || m.height < last {
                return bad(format!(
                    "merge {i} height {} is below the previous one",
                    m.height
                ));
            }
            used[m.a] = true;
            used[m.b] = true;
            sizes.push(m.size);
            last = m.height;
        }
        Ok(())
    }
}

/// 1 − cosine similarity between rows of `vectors` [n, d] (zero rows get distance 1 to everything
/// but themselves). Returns a symmetric n×n matrix with a zero diagonal, values in [0, 2].
///
/// Panics if `vectors.len() != n * d`.
pub fn cosine_distances(vectors: &[f32], n: usize, d: usize) -> Vec<f32> {
    assert_eq!(
        vectors.len(),
        n * d,
        "cosine_distances: expected {n}×{d} values"
    );
    // Unit rows, so one GEMM gives all cosines. Zero rows stay zero.
    let mut unit = vectors.to_vec();
    let mut is_zero = vec![false; n];
    for (row, zero) in unit.chunks_mut(d.max(1)).zip(is_zero.iter_mut()) {
        let norm = row.iter().map(|&x| x as f64 * x as f64).sum::<f64>().sqrt();
        if norm > 0.0 {
            row.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
        } else {
            *zero = true;
        }
    }
    if d == 0 {
        is_zero.fill(true);
    }
    let mut out = vec![0f32; n * n];
    crate::linalg::matmul(
        &mut out,
        &unit,
        &unit,
        (n, d, n),
        crate::linalg::RhsLayout::Transposed,
        false,
        true,
    );
    // Turn similarities into distances from the upper triangle only, so the result is exactly
    // symmetric whatever order the GEMM summed in.
    for i in 0..n {
        out[i * n + i] = 0.0;
        for j in i + 1..n {
            let v = if is_zero[i] || is_zero[j] {
                1.0
            } else {
                (1.0 - out[i * n + j]).clamp(0.0, 2.0)
            };
            out[i * n + j] = v;
            out[j * n + i] = v;
        }
    }
    out
}

/// Pearson correlation of two equal-length samples (f64). NaN when the lengths differ, there are
/// fewer than two values, or either sample is constant.
pub fn pearson(a: &[f64], b: &[f64]) -> f64 {
    if a.len() != b.len() || a.len() < 2 {
        return f64::NAN;
    }
    let len = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / len, b.iter().sum::<f64>() / len);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (&x, &y) in a.iter().zip(b) {
        let (dx, dy) = (x - ma, y - mb);
        sab += dx * dy;
        saa += dx * dx;
        sbb += dy * dy;
    }
    let denom = (saa * sbb).sqrt();
    if denom > 0.0 { sab / denom } else { f64::NAN }
}

/// A taxonomy (e.g. WordNet) as child → parent links.
///
/// WordNet has a few synsets with several hypernyms; the first parent read is kept, so the
/// taxonomy is always a forest and ancestor paths are unique.
#[derive(Clone, Debug, Default)]
pub struct Taxonomy {
    parent: HashMap<String, String>,
    labels: HashMap<String, String>,
    /// Every id seen, so an unknown id can be told apart from a root.
    nodes: HashSet<String>,
}

/// networkx node-link layout; other fields (e.g. WordNet "contraction") are ignored.
#[derive(serde::Deserialize)]
struct NodeLink {
    nodes: Vec<NodeLinkNode>,
    links: Vec<NodeLinkEdge>,
}

#[derive(serde::Deserialize)]
struct NodeLinkNode {
    id: serde_json::Value,
    #[serde(default)]
    label: Option<String>,
}

#[derive(serde::Deserialize)]
struct NodeLinkEdge {
    source: serde_json::Value,
    target: serde_json::Value,
}

/// networkx ids may be strings or numbers; both become strings.
fn node_id(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Taxonomy {
    /// Builds a taxonomy from (parent, child) pairs.
    pub fn from_pairs<P: Into<String>, C: Into<String>>(
        pairs: impl IntoIterator<Item = (P, C)>,
    ) -> Taxonomy {
        let mut tax = Taxonomy::default();
        for (p, c) in pairs {
            tax.add_link(p.into(), c.into());
        }
        tax
    }

    fn add_link(&mut self, parent: String, child: String) {
        self.nodes.insert(parent.clone());
        self.nodes.insert(child.clone());
        if parent != child {
            self.parent.entry(child).or_insert(parent);
        }
    }

    /// networkx node-link JSON: {"nodes":[{"id":..,"label":..},..], "links":[{"source":parent,"target":child},..]}
    /// e.g. /work/shared/data/wordnet/cifar10-graph-wordnet.json
    pub fn from_node_link_json(path: &Path) -> Result<Taxonomy> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let graph: NodeLink = serde_json::from_str(&text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            error: source,
        })?;
        let mut tax = Taxonomy::default();
        for node in &graph.nodes {
            let id = node_id(&node.id);
            if let Some(label) = &node.label {
                tax.labels.insert(id.clone(), label.clone());
            }
            tax.nodes.insert(id);
        }
        for link in &graph.links {
            tax.add_link(node_id(&link.source), node_id(&link.target));
        }
        Ok(tax)
    }

    /// Lines "parent child" (whitespace separated), e.g. /work/shared/data/wordnet/class_hierarchy.txt.
    /// Blank lines and lines starting with '#' are skipped. Such files carry no labels.
    pub fn from_parent_child_lines(path: &Path) -> Result<Taxonomy> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut tax = Taxonomy::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [parent, child] = fields[..] else {
                return Err(Error::Invalid(format!(
                    "{}:{}: expected \"parent child\", found {line:?}",
                    path.display(),
                    i + 1
                )));
            };
            tax.add_link(parent.to_string(), child.to_string());
        }
        Ok(tax)
    }

    pub fn label(&self, id: &str) -> Option<&str> {
        self.labels.get(id).map(String::as_str)
    }

    /// Path from id up to its root, starting with id. Empty for an unknown id.
    pub fn ancestors(&self, id: &str) -> Vec<String> {
        if !self.nodes.contains(id) {
            return Vec::new();
        }
        let mut path = vec![id.to_string()];
        let mut seen: HashSet<&str> = HashSet::from([id]);
        let mut cur = id;
        while let Some(p) = self.parent.get(cur) {
            // A malformed file could hold a cycle; stop rather than loop forever.
            if !seen.insert(p) {
                break;
            }
            path.push(p.clone());
            cur = p;
        }
        path
    }

    /// Number of edges on the path a → lowest common ancestor → b; None if no common ancestor or unknown id.
    pub fn lca_distance(&self, a: &str, b: &str) -> Option<usize> {
        let (up_a, up_b) = (self.ancestors(a), self.ancestors(b));
        lca_distance_on_paths(&depths(&up_a), &up_b)
    }

    /// For the given leaf ids: the lowest common ancestor of all of them, then the index of that
    /// ancestor's child each id descends from, renumbered 0.. in order of first appearance. This is
    /// the taxonomy's "top split" of those classes (for CIFAR-10: vehicles vs animals).
    pub fn top_groups(&self, ids: &[String]) -> Result<Vec<usize>> {
        if ids.is_empty() {
            return Err(Error::Invalid("top_groups: no ids given".into()));
        }
        let paths: Vec<Vec<String>> = ids.iter().map(|id| self.ancestors(id)).collect();
        if let Some(i) = paths.iter().position(Vec::is_empty) {
            return Err(Error::Invalid(format!(
                "top_groups: {:?} is not in the taxonomy",
                ids[i]
            )));
        }
        // The LCA is the lowest node on the first path that lies on every other path.
        let sets: Vec<HashSet<&str>> = paths
            .iter()
            .map(|p| p.iter().map(String::as_str).collect())
            .collect();
        let lca = paths[0]
            .iter()
            .find(|x| sets.iter().all(|s| s.contains(x.as_str())))
            .ok_or_else(|| Error::Invalid("top_groups: the ids share no common ancestor".into()))?;

        let mut group_of_child: HashMap<&str, usize> = HashMap::new();
        let mut groups = Vec::with_capacity(ids.len());
        for (id, path) in ids.iter().zip(&paths) {
            let at = path.iter().position(|x| x == lca).unwrap_or(0);
            if at == 0 {
                return Err(Error::Invalid(format!(
                    "top_groups: {id:?} is itself the common ancestor of all ids, so there is no split"
                )));
            }
            let next = group_of_child.len();
            groups.push(*group_of_child.entry(path[at - 1].as_str()).or_insert(next));
        }
        Ok(groups)
    }
}

/// Position of each node on an ancestor path (0 = the node itself).
fn depths(path: &[String]) -> HashMap<&str, usize> {
    path.iter()
        .enumerate()
        .map(|(i, x)| (x.as_str(), i))
        .collect()
}

/// Edges from a up to the first ancestor of b that is also an ancestor of a, and down to b.
fn lca_distance_on_paths(depth_a: &HashMap<&str, usize>, up_b: &[String]) -> Option<usize> {
    up_b.iter()
        .enumerate()
        .find_map(|(j, x)| depth_a.get(x.as_str()).map(|i| i + j))
}

/// Cophenetic correlation between a dendrogram over `ids.len()` leaves (leaf i = ids[i]) and the
/// taxonomy's LCA path distances, over all pairs i<j where the taxonomy knows both.
pub fn cophenetic_correlation(d: &Dendrogram, ids: &[String], tax: &Taxonomy) -> Result<f64> {
    if ids.len() != d.n {
        return Err(Error::Invalid(format!(
            "cophenetic_correlation: {} ids for a dendrogram over {} leaves",
            ids.len(),
            d.n
        )));
    }
    let coph = d.cophenetic();
    // Ancestor paths once per id rather than once per pair.
    let paths: Vec<Vec<String>> = ids.iter().map(|id| tax.ancestors(id)).collect();
    let (mut tree, mut truth) = (Vec::new(), Vec::new());
    for i in 0..d.n {
        let depth_i = depths(&paths[i]);
        for j in i + 1..d.n {
            if let Some(dist) = lca_distance_on_paths(&depth_i, &paths[j]) {
                tree.push(coph[i * d.n + j] as f64);
                truth.push(dist as f64);
            }
        }
    }
    let r = pearson(&tree, &truth);
    if r.is_nan() {
        return Err(Error::Invalid(format!(
            "cophenetic_correlation: undefined over {} comparable pairs (too few, or one side is constant)",
            tree.len()
        )));
    }
    Ok(r)
}

/// Purity of a two-way split against true group labels: Σ over the two sides of the size of that
/// side's majority true group, divided by the number of leaves. NaN for an empty split.
///
/// Panics if a leaf is out of range for `truth`.
pub fn split_purity(split: &(Vec<usize>, Vec<usize>), truth: &[usize]) -> f64 {
    let majority = |side: &[usize]| -> usize {
        let mut counts: HashMap<usize, usize> = HashMap::new();
        for &leaf in side {
            *counts.entry(truth[leaf]).or_default() += 1;
        }
        counts.into_values().max().unwrap_or(0)
    };
    let total = split.0.len() + split.1.len();
    if total == 0 {
        return f64::NAN;
    }
    (majority(&split.0) + majority(&split.1)) as f64 / total as f64
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
