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
mod tests {
    use super::*;
    use crate::rng::Rng;
    use crate::shared::shared_path;

    /// The classic UPGMA example (Wikipedia): points a..e.
    fn five_points() -> Vec<f32> {
        let pairs = [
            (0, 1, 17.0),
            (0, 2, 21.0),
            (0, 3, 31.0),
            (0, 4, 23.0),
            (1, 2, 30.0),
            (1, 3, 34.0),
            (1, 4, 21.0),
            (2, 3, 28.0),
            (2, 4, 39.0),
            (3, 4, 43.0),
        ];
        let mut d = vec![0f32; 25];
        for (i, j, v) in pairs {
            d[i * 5 + j] = v;
            d[j * 5 + i] = v;
        }
        d
    }

    fn euclidean(points: &[f32], n: usize, dim: usize) -> Vec<f32> {
        let mut d = vec![0f32; n * n];
        for i in 0..n {
            for j in 0..n {
                let s: f32 = (0..dim)
                    .map(|k| (points[i * dim + k] - points[j * dim + k]).powi(2))
                    .sum();
                d[i * n + j] = s.sqrt();
            }
        }
        d
    }

    fn random_points(rng: &mut Rng, n: usize, dim: usize) -> Vec<f32> {
        (0..n * dim).map(|_| rng.normal()).collect()
    }

    fn merge(a: usize, b: usize, height: f32, size: usize) -> Merge {
        Merge { a, b, height, size }
    }

    #[test]
    fn average_linkage_matches_hand_computed_upgma() {
        let tree = average_linkage(&five_points(), 5).unwrap();
        // a+b at 17 → 5; e joins at (23+21)/2 = 22 → 6; c+d at 28 → 7;
        // then (abe, cd) at ((2·25.5+39)/3 + (2·32.5+43)/3)/2 = (30+36)/2 = 33.
        let expected = vec![
            merge(0, 1, 17.0, 2),
            merge(4, 5, 22.0, 3),
            merge(2, 3, 28.0, 2),
            merge(6, 7, 33.0, 5),
        ];
        assert_eq!(tree.merges, expected);
        tree.validate().unwrap();
        assert_eq!(tree.root(), 8);
        assert_eq!(tree.children(8), Some((6, 7)));
        assert_eq!(tree.children(3), None);
        assert_eq!(tree.leaves(6), vec![4, 0, 1]);
        assert_eq!(tree.top_split(), (vec![4, 0, 1], vec![2, 3]));
    }

    #[test]
    fn cophenetic_matrix_on_the_hand_example() {
        let tree = average_linkage(&five_points(), 5).unwrap();
        let c = tree.cophenetic();
        let expected = [
            [0.0, 17.0, 33.0, 33.0, 22.0],
            [17.0, 0.0, 33.0, 33.0, 22.0],
            [33.0, 33.0, 0.0, 28.0, 33.0],
            [33.0, 33.0, 28.0, 0.0, 33.0],
            [22.0, 22.0, 33.0, 33.0, 0.0],
        ];
        assert_eq!(c, expected.concat());
    }

    #[test]
    fn average_linkage_edge_cases() {
        let one = average_linkage(&[0.0], 1).unwrap();
        assert!(one.merges.is_empty());
        assert_eq!(one.root(), 0);
        assert_eq!(one.top_split(), (vec![0], vec![]));
        assert_eq!(one.cophenetic(), vec![0.0]);
        assert!(average_linkage(&[], 0).is_err());
        assert!(average_linkage(&[0.0, 1.0, 1.0], 2).is_err());
        assert!(average_linkage(&[0.0, 1.0, 2.0, 0.0], 2).is_err());
        assert!(average_linkage(&[0.0, f32::NAN, f32::NAN, 0.0], 2).is_err());
        // All distances equal: ties everywhere must still give a valid, deterministic tree.
        let n = 6;
        let flat: Vec<f32> = (0..n * n)
            .map(|i| if i / n == i % n { 0.0 } else { 1.0 })
            .collect();
        let t = average_linkage(&flat, n).unwrap();
        t.validate().unwrap();
        assert_eq!(t, average_linkage(&flat, n).unwrap());
        assert!(t.merges.iter().all(|m| m.height == 1.0));
    }

    /// Textbook O(n³) average linkage: recompute every cluster-pair mean from the original
    /// distances and merge the closest pair. Returns (height, sorted leaves of the new cluster).
    fn naive_average_linkage(d: &[f32], n: usize) -> Vec<(f64, Vec<usize>)> {
        let mut clusters: Vec<Vec<usize>> = (0..n).map(|i| vec![i]).collect();
        let mut out = Vec::new();
        while clusters.len() > 1 {
            let mut best = (f64::INFINITY, 0, 0);
            for i in 0..clusters.len() {
                for j in i + 1..clusters.len() {
                    let mut s = 0.0;
                    for &x in &clusters[i] {
                        for &y in &clusters[j] {
                            s += d[x * n + y] as f64;
                        }
                    }
                    let mean = s / (clusters[i].len() * clusters[j].len()) as f64;
                    if mean < best.0 {
                        best = (mean, i, j);
                    }
                }
            }
            let (h, i, j) = best;
            let right = clusters.remove(j);
            clusters[i].extend(right);
            clusters[i].sort();
            out.push((h, clusters[i].clone()));
        }
        out
    }

    #[test]
    fn nn_chain_matches_naive_average_linkage_on_random_points() {
        let mut rng = Rng::new(7);
        let (n, dim) = (40, 5);
        let d = euclidean(&random_points(&mut rng, n, dim), n, dim);
        let tree = average_linkage(&d, n).unwrap();
        tree.validate().unwrap();
        let naive = naive_average_linkage(&d, n);
        assert_eq!(tree.merges.len(), naive.len());
        for (i, (m, (h, leaves))) in tree.merges.iter().zip(&naive).enumerate() {
            assert!(
                (m.height as f64 - h).abs() < 1e-4 * h.max(1.0),
                "height {} vs naive {h}",
                m.height
            );
            // Same clusters in the same order (random distances have no ties).
            let mut ours = tree.leaves(n + i);
            ours.sort();
            assert_eq!(&ours, leaves);
        }
    }

    #[test]
    fn recovers_a_planted_hierarchy() {
        // 2 top groups × 3 subgroups × 6 points: far-apart top centres, nearer subgroup centres,
        // small noise.
        let mut rng = Rng::new(42);
        let dim = 16;
        let mut points = Vec::new();
        let (mut top, mut sub) = (Vec::new(), Vec::new());
        for g in 0..2 {
            let centre: Vec<f32> = (0..dim).map(|_| 8.0 * rng.normal()).collect();
            for s in 0..3 {
                let sub_centre: Vec<f32> = centre.iter().map(|c| c + 3.0 * rng.normal()).collect();
                for _ in 0..6 {
                    points.extend(sub_centre.iter().map(|c| c + 0.3 * rng.normal()));
                    top.push(g);
                    sub.push(g * 3 + s);
                }
            }
        }
        let n = top.len();
        let tree = average_linkage(&euclidean(&points, n, dim), n).unwrap();
        assert_eq!(split_purity(&tree.top_split(), &top), 1.0);

        // The true tree as a taxonomy: root → group → subgroup → point.
        let mut links = vec![];
        for i in 0..n {
            links.push((format!("s{}", sub[i]), format!("p{i}")));
            links.push((format!("g{}", top[i]), format!("s{}", sub[i])));
        }
        links.push(("root".into(), "g0".into()));
        links.push(("root".into(), "g1".into()));
        let tax = Taxonomy::from_pairs(links);
        let ids: Vec<String> = (0..n).map(|i| format!("p{i}")).collect();
        let r = cophenetic_correlation(&tree, &ids, &tax).unwrap();
        assert!(r > 0.9, "cophenetic correlation {r}");
        assert_eq!(tax.top_groups(&ids).unwrap(), top);

        // A shuffled labelling must do much worse, so the test can fail.
        let mut shuffled = ids.clone();
        for i in (1..n).rev() {
            shuffled.swap(i, rng.below(i + 1));
        }
        let r_bad = cophenetic_correlation(&tree, &shuffled, &tax).unwrap();
        assert!(r_bad < 0.5, "shuffled correlation {r_bad}");
    }

    #[test]
    fn cosine_distances_known_values() {
        let v = [1.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0, -2.0, 0.0];
        let d = cosine_distances(&v, 5, 2);
        let at = |i: usize, j: usize| d[i * 5 + j];
        assert!((at(0, 1) - 1.0).abs() < 1e-6);
        assert!((at(0, 2) - (1.0 - std::f32::consts::FRAC_1_SQRT_2)).abs() < 1e-6);
        assert!((at(0, 4) - 2.0).abs() < 1e-6);
        assert_eq!(at(3, 3), 0.0);
        assert_eq!(at(3, 0), 1.0);
        assert_eq!(at(4, 3), 1.0);
        for i in 0..5 {
            assert_eq!(at(i, i), 0.0);
            for j in 0..5 {
                assert_eq!(at(i, j), at(j, i));
            }
        }
    }

    #[test]
    fn pearson_known_values() {
        let a = [1.0, 2.0, 3.0, 4.0];
        assert!((pearson(&a, &[2.0, 4.0, 6.0, 8.0]) - 1.0).abs() < 1e-12);
        assert!((pearson(&a, &[8.0, 6.0, 4.0, 2.0]) + 1.0).abs() < 1e-12);
        // Hand-computed: deviations (−1.5, −.5, .5, 1.5) and (−1.5, .5, −.5, 1.5):
        // Σxy = 4, Σx² = Σy² = 5, so r = 4/5.
        let r = pearson(&a, &[1.0, 3.0, 2.0, 4.0]);
        assert!((r - 0.8).abs() < 1e-12, "{r}");
        assert!(pearson(&a, &[1.0, 1.0, 1.0, 1.0]).is_nan());
        assert!(pearson(&a, &[1.0]).is_nan());
    }

    #[test]
    fn split_purity_hand_computed() {
        let truth = [0, 0, 0, 1, 1, 1];
        // Left {0,1,3}: majority 0 (2). Right {2,4,5}: majority 1 (2). (2+2)/6.
        let p = split_purity(&(vec![0, 1, 3], vec![2, 4, 5]), &truth);
        assert!((p - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(split_purity(&(vec![0, 1, 2], vec![3, 4, 5]), &truth), 1.0);
        assert!((split_purity(&(vec![0, 1, 2, 3, 4], vec![5]), &truth) - 4.0 / 6.0).abs() < 1e-12);
    }

    #[test]
    fn lca_distance_on_a_tiny_taxonomy() {
        //        root
        //       /    \
        //   animal   vehicle
        //    /  \       \
        //  cat  dog     car
        let tax = Taxonomy::from_pairs([
            ("root", "animal"),
            ("root", "vehicle"),
            ("animal", "cat"),
            ("animal", "dog"),
            ("vehicle", "car"),
        ]);
        assert_eq!(tax.ancestors("cat"), vec!["cat", "animal", "root"]);
        assert_eq!(tax.lca_distance("cat", "dog"), Some(2));
        assert_eq!(tax.lca_distance("cat", "car"), Some(4));
        assert_eq!(tax.lca_distance("cat", "animal"), Some(1));
        assert_eq!(tax.lca_distance("cat", "cat"), Some(0));
        assert_eq!(tax.lca_distance("cat", "unicorn"), None);
        assert!(tax.ancestors("unicorn").is_empty());
        let ids: Vec<String> = ["cat", "car", "dog"].map(String::from).to_vec();
        assert_eq!(tax.top_groups(&ids).unwrap(), vec![0, 1, 0]);
        assert!(
            tax.top_groups(&["cat".to_string(), "animal".to_string()])
                .is_err()
        );
        assert!(
            tax.top_groups(&["cat".to_string(), "unicorn".to_string()])
                .is_err()
        );

        // Two separate trees share no ancestor.
        let forest = Taxonomy::from_pairs([("a", "b"), ("c", "d")]);
        assert_eq!(forest.lca_distance("b", "d"), None);
        assert!(
            forest
                .top_groups(&["b".to_string(), "d".to_string()])
                .is_err()
        );
    }

    fn cifar10_ids() -> Vec<String> {
        let text = std::fs::read_to_string(shared_path("data/wordnet/cifar10-wnids.txt")).unwrap();
        text.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn cifar10_wordnet_splits_vehicles_from_animals() {
        let tax =
            Taxonomy::from_node_link_json(&shared_path("data/wordnet/cifar10-graph-wordnet.json"))
                .unwrap();
        let ids = cifar10_ids();
        assert_eq!(ids.len(), 10);
        let labels: Vec<&str> = ids.iter().map(|id| tax.label(id).unwrap()).collect();
        assert_eq!(labels[0], "airplane");
        assert_eq!(labels[3], "cat");
        assert_eq!(labels[9], "truck");
        // airplane, automobile, ship, truck vs the six animals.
        assert_eq!(
            tax.top_groups(&ids).unwrap(),
            vec![0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
        );
        let (cat, dog, truck) = (&ids[3], &ids[5], &ids[9]);
        // cat → carnivore ← dog; cat → … → whole ← … ← truck.
        assert_eq!(tax.lca_distance(cat, dog), Some(2));
        assert_eq!(tax.lca_distance(cat, truck), Some(7));

        // A dendrogram built from the taxonomy's own distances correlates strongly with it.
        let n = ids.len();
        let d: Vec<f32> = (0..n * n)
            .map(|k| tax.lca_distance(&ids[k / n], &ids[k % n]).unwrap() as f32)
            .collect();
        let tree = average_linkage(&d, n).unwrap();
        assert!(cophenetic_correlation(&tree, &ids, &tax).unwrap() > 0.8);
        let truth = tax.top_groups(&ids).unwrap();
        assert_eq!(split_purity(&tree.top_split(), &truth), 1.0);
    }

    #[test]
    fn imagenet_class_hierarchy_reaches_entity() {
        let tax =
            Taxonomy::from_parent_child_lines(&shared_path("data/wordnet/class_hierarchy.txt"))
                .unwrap();
        let info: Vec<(usize, String, String)> = serde_json::from_str(
            &std::fs::read_to_string(shared_path("data/wordnet/dataset_class_info.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(info.len(), 1000);
        for (_, wnid, name) in &info {
            let up = tax.ancestors(wnid);
            assert!(up.len() > 2, "{wnid} ({name}) has ancestors {up:?}");
            assert_eq!(
                up.last().unwrap(),
                "n00001740",
                "{wnid} ({name}) is not under entity"
            );
        }
        // tench → tinca → cyprinid → … → fish → … → vertebrate.
        assert!(
            tax.ancestors("n01440764")
                .contains(&"n01471682".to_string())
        );
        // goldfish is closer to tench than to toilet tissue.
        let near = tax.lca_distance("n01440764", "n01443537").unwrap();
        let far = tax.lca_distance("n01440764", "n15075141").unwrap();
        assert!(near < far, "{near} vs {far}");
    }

    /// `cargo test --lib analysis::tree::tests::time_average_linkage_n2048 -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn time_average_linkage_n2048() {
        let mut rng = Rng::new(1);
        let (n, dim) = (2048, 64);
        let d = cosine_distances(&random_points(&mut rng, n, dim), n, dim);
        let start = std::time::Instant::now();
        let tree = average_linkage(&d, n).unwrap();
        let took = start.elapsed();
        tree.validate().unwrap();
        println!("average_linkage n={n}: {took:?}");
    }
}
