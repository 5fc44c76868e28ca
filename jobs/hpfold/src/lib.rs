//! Protein folding in the two-dimensional HP lattice model (Dill, 1985): a chain of
//! hydrophobic (H) and polar (P) residues lies on the square lattice as a self-avoiding walk,
//! and each pair of H residues that are lattice neighbours without being chain neighbours
//! lowers the energy by 1. Finding the lowest energy is NP-hard.
//!
//! The search is replica-exchange Monte Carlo with pull moves (Lesh, Mitzenmacher and
//! Whitesides, 2003; Thachuk, Shmygelska and Hoos, 2007): replicas at a ladder of
//! temperatures make Metropolis pull moves, and neighbours on the ladder swap temperatures
//! with the usual acceptance rule.

/// A lattice site.
pub type Site = (i32, i32);

const STEPS: [Site; 4] = [(1, 0), (0, 1), (-1, 0), (0, -1)];

fn add(a: Site, b: Site) -> Site {
    (a.0 + b.0, a.1 + b.1)
}

fn sub(a: Site, b: Site) -> Site {
    (a.0 - b.0, a.1 - b.1)
}

fn adjacent(a: Site, b: Site) -> bool {
    (a.0 - b.0).abs() + (a.1 - b.1).abs() == 1
}

/// Parses a sequence of `H` and `P` (case-insensitive); `true` is H.
pub fn parse_sequence(text: &str) -> Result<Vec<bool>, String> {
    let seq: Vec<bool> = text
        .trim()
        .chars()
        .map(|c| match c.to_ascii_uppercase() {
            'H' => Ok(true),
            'P' => Ok(false),
            other => Err(format!("the sequence may hold only H and P, not {other:?}")),
        })
        .collect::<Result<_, _>>()?;
    if seq.len() < 2 {
        return Err("the sequence needs at least two residues".into());
    }
    Ok(seq)
}

/// The energy of a conformation: minus the number of H–H topological contacts. `None` when
/// the sites are not a self-avoiding walk.
pub fn energy(seq: &[bool], sites: &[Site]) -> Option<i32> {
    if sites.len() != seq.len() || sites.windows(2).any(|w| !adjacent(w[0], w[1])) {
        return None;
    }
    let mut seen = std::collections::HashMap::new();
    for (i, &s) in sites.iter().enumerate() {
        if seen.insert(s, i).is_some() {
            return None;
        }
    }
    let mut contacts = 0;
    for (i, &s) in sites.iter().enumerate() {
        if !seq[i] {
            continue;
        }
        for d in STEPS {
            if let Some(&j) = seen.get(&add(s, d))
                && j > i + 1
                && seq[j]
            {
                contacts += 1;
            }
        }
    }
    Some(-contacts)
}

/// A conformation as absolute moves: `R`, `U`, `L`, `D` from each residue to the next.
pub fn directions(sites: &[Site]) -> String {
    sites
        .windows(2)
        .map(|w| match sub(w[1], w[0]) {
            (1, 0) => 'R',
            (0, 1) => 'U',
            (-1, 0) => 'L',
            _ => 'D',
        })
        .collect()
}

/// The sites a direction string walks through, from the origin.
pub fn walk(directions: &str) -> Option<Vec<Site>> {
    let mut sites = vec![(0, 0)];
    for c in directions.chars() {
        let step = match c {
            'R' => STEPS[0],
            'U' => STEPS[1],
            'L' => STEPS[2],
            'D' => STEPS[3],
            _ => return None,
        };
        sites.push(add(*sites.last().unwrap(), step));
    }
    Some(sites)
}

/// One chain on a finite grid that is re-centred when the chain drifts to its edge.
#[derive(Clone)]
struct Chain {
    sites: Vec<Site>,
    /// Residue index + 1 at each grid cell, 0 when free.
    grid: Vec<u16>,
    width: i32,
    energy: i32,
}

impl Chain {
    fn straight(n: usize) -> Chain {
        let width = 4 * n as i32 + 8;
        let mut chain = Chain {
            sites: (0..n as i32).map(|i| (i, 0)).collect(),
            grid: vec![0; (width * width) as usize],
            width,
            energy: 0,
        };
        chain.recentre();
        chain
    }

    fn cell(&self, s: Site) -> usize {
        (s.1 * self.width + s.0) as usize
    }

    fn at(&self, s: Site) -> Option<usize> {
        match self.grid[self.cell(s)] {
            0 => None,
            k => Some(k as usize - 1),
        }
    }

    fn free(&self, s: Site) -> bool {
        self.grid[self.cell(s)] == 0
    }

    fn recentre(&mut self) {
        let (min_x, min_y) = self
            .sites
            .iter()
            .fold((i32::MAX, i32::MAX), |(a, b), s| (a.min(s.0), b.min(s.1)));
        let (max_x, max_y) = self
            .sites
            .iter()
            .fold((i32::MIN, i32::MIN), |(a, b), s| (a.max(s.0), b.max(s.1)));
        let shift = (
            self.width / 2 - (min_x + max_x) / 2,
            self.width / 2 - (min_y + max_y) / 2,
        );
        self.grid.iter_mut().for_each(|c| *c = 0);
        for i in 0..self.sites.len() {
            self.sites[i] = add(self.sites[i], shift);
            let c = self.cell(self.sites[i]);
            self.grid[c] = i as u16 + 1;
        }
    }

    fn near_edge(&self) -> bool {
        self.sites
            .iter()
            .any(|s| s.0 < 3 || s.1 < 3 || s.0 > self.width - 4 || s.1 > self.width - 4)
    }

    fn contacts_energy(&self, seq: &[bool]) -> i32 {
        let mut contacts = 0;
        for (i, &s) in self.sites.iter().enumerate() {
            if !seq[i] {
                continue;
            }
            for d in STEPS {
                if let Some(j) = self.at(add(s, d))
                    && j > i + 1
                    && seq[j]
                {
                    contacts += 1;
                }
            }
        }
        -contacts
    }

    /// A pull move of residue `i` towards the chain's high end (`up`) or low end; `choice`
    /// picks among the candidate sites. Returns the new sites of the residues that move, or
    /// `None` when the move is not possible.
    fn pull(&self, i: usize, up: bool, choice: usize) -> Option<Vec<(usize, Site)>> {
        let n = self.sites.len();
        // Index arithmetic in the direction of the pull: `next` is the anchor side, `prev`
        // the side that follows.
        let next = |k: usize| {
            if up {
                k.checked_add(1).filter(|&k| k < n)
            } else {
                k.checked_sub(1)
            }
        };
        let prev = |k: usize| {
            if up {
                k.checked_sub(1)
            } else {
                k.checked_add(1).filter(|&k| k < n)
            }
        };
        let pos = self.sites[i];
        let mut moves = Vec::new();
        let (l, c) = match next(i) {
            Some(anchor) => {
                // L: free, adjacent to the anchor, diagonal to residue i. C completes the square.
                let a = self.sites[anchor];
                let candidates: Vec<Site> = STEPS
                    .iter()
                    .map(|&d| add(a, d))
                    .filter(|&l| (l.0 - pos.0).abs() == 1 && (l.1 - pos.1).abs() == 1)
                    .collect();
                let l = *candidates.get(choice % candidates.len().max(1))?;
                (l, add(l, sub(pos, a)))
            }
            None => {
                // The end residue: move it two steps, to C through L.
                let l = add(pos, STEPS[choice % 4]);
                let c = add(l, STEPS[(choice / 4) % 4]);
                if c == pos {
                    return None;
                }
                (c, l)
            }
        };
        if !self.free(l) {
            return None;
        }
        moves.push((i, l));
        let Some(p) = prev(i) else {
            return Some(moves);
        };
        if self.sites[p] == c {
            return Some(moves);
        }
        if !self.free(c) {
            return None;
        }
        moves.push((p, c));
        // The rest follows two sites behind until it is connected again.
        let mut j = p;
        let mut placed = c;
        while let Some(k) = prev(j) {
            if adjacent(self.sites[k], placed) {
                break;
            }
            let follow = self.sites[next(next(k).unwrap()).unwrap()];
            moves.push((k, follow));
            placed = follow;
            j = k;
        }
        Some(moves)
    }

    fn apply(&mut self, moves: &[(usize, Site)]) {
        for &(k, _) in moves {
            let c = self.cell(self.sites[k]);
            self.grid[c] = 0;
        }
        for &(k, s) in moves {
            self.sites[k] = s;
            let c = self.cell(s);
            self.grid[c] = k as u16 + 1;
        }
    }
}

/// What the search found.
#[derive(Debug, Clone)]
pub struct Fold {
    /// The lowest energy reached.
    pub energy: i32,
    /// A conformation with that energy.
    pub sites: Vec<Site>,
    /// Move attempts made, over all replicas, until the search stopped.
    pub attempts: u64,
}

/// How to search.
#[derive(Debug, Clone)]
pub struct Search {
    /// Replica temperatures, lowest first.
    pub temperatures: Vec<f64>,
    /// Move attempts per replica between exchanges.
    pub sweep: u64,
    /// Move attempts over all replicas before giving up.
    pub max_attempts: u64,
    /// Stop as soon as this energy is reached.
    pub target: Option<i32>,
}

impl Default for Search {
    fn default() -> Search {
        let (lo, hi, k) = (0.3f64, 1.6f64, 8);
        Search {
            temperatures: (0..k)
                .map(|i| lo * (hi / lo).powf(i as f64 / (k - 1) as f64))
                .collect(),
            sweep: 500,
            max_attempts: 20_000_000,
            target: None,
        }
    }
}

/// Searches for a low-energy fold of `seq`. `below(n)` draws uniformly from `0..n` and
/// `uniform()` from [0, 1); `progress` is told the best energy so far after each exchange.
pub fn fold(
    seq: &[bool],
    search: &Search,
    below: &mut impl FnMut(u64) -> u64,
    uniform: &mut impl FnMut() -> f64,
    progress: &mut impl FnMut(u64, i32),
) -> Fold {
    let n = seq.len();
    let mut replicas: Vec<Chain> = (0..search.temperatures.len())
        .map(|_| Chain::straight(n))
        .collect();
    let mut best = Fold {
        energy: 0,
        sites: replicas[0].sites.clone(),
        attempts: 0,
    };
    let mut attempts = 0u64;
    while attempts < search.max_attempts {
        for (r, chain) in replicas.iter_mut().enumerate() {
            let t = search.temperatures[r];
            for _ in 0..search.sweep {
                attempts += 1;
                let i = below(n as u64) as usize;
                let up = below(2) == 0;
                let choice = below(16) as usize;
                let Some(moves) = chain.pull(i, up, choice) else {
                    continue;
                };
                let old = chain.energy;
                let saved: Vec<(usize, Site)> =
                    moves.iter().map(|&(k, _)| (k, chain.sites[k])).collect();
                chain.apply(&moves);
                let new = chain.contacts_energy(seq);
                let de = (new - old) as f64;
                if de <= 0.0 || uniform() < (-de / t).exp() {
                    chain.energy = new;
                    if new < best.energy {
                        best.energy = new;
                        best.sites = chain.sites.clone();
                    }
                } else {
                    chain.apply(&saved);
                }
                if chain.near_edge() {
                    chain.recentre();
                }
            }
        }
        // Exchange neighbouring temperatures.
        for r in 0..replicas.len().saturating_sub(1) {
            let temps = &search.temperatures;
            let delta = (1.0 / temps[r] - 1.0 / temps[r + 1])
                * (replicas[r].energy - replicas[r + 1].energy) as f64;
            if delta >= 0.0 || uniform() < delta.exp() {
                replicas.swap(r, r + 1);
            }
        }
        progress(attempts, best.energy);
        if search.target.is_some_and(|t| best.energy <= t) {
            break;
        }
    }
    best.attempts = attempts;
    // Report the fold from the origin.
    let origin = best.sites[0];
    best.sites = best.sites.iter().map(|&s| sub(s, origin)).collect();
    best
}
