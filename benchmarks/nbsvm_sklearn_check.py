"""Offline check of the NB family's ceiling on MR (scikit-learn, not the app): 10-fold CV, seed 1337.

    python benchmarks/nbsvm_sklearn_check.py

For each fold: binarized uni(+bi/tri)grams of Kim's clean_str tokens, Wang & Manning's r (alpha), then
MNB (sign of x.r + log prior), NBSVM (LinearSVC on x*r, C=1, interpolated w' = (1-beta) mean|w| + beta w)
and logistic regression (C=4) on x*r. `all90` counts r on the fold's whole training part (W&M's protocol);
`dev-held` on 90% of it, as the app's CV does (10% dev held out for early stopping). Prints accuracy %.
This is the check docs/bench/text.md cites for why the Keras family stops near MNB; it is slow (~7 min here
under load) and is not part of `make bench-text`.
"""
import sys, numpy as np, scipy.sparse as sp, re, itertools
from sklearn.svm import LinearSVC
from sklearn.linear_model import LogisticRegression
from cnnapp.data import stratified_folds
T = "/work/shared/data/text/mr/"
pos = open(T+"rt-polarity.pos", encoding="latin-1").read().splitlines()
neg = open(T+"rt-polarity.neg", encoding="latin-1").read().splitlines()
X = np.array(neg + pos, dtype=object); y = np.array([0]*len(neg) + [1]*len(pos))
import tensorflow as tf
from cnnapp.preprocessing.text import kim_standardize
toks = [s.decode().split() for s in kim_standardize(tf.constant(X.astype(str))).numpy()]
def grams(t, n):
    return set(itertools.chain.from_iterable((" ".join(t[i:i+k]) for i in range(len(t)-k+1)) for k in range(1, n+1)))
def run(n=2, alpha=1.0, C=1.0, beta=0.25, model="svm", seed=1337, dev=False):
    G = [grams(t, n) for t in toks]
    accs = {}
    for f, test_idx in enumerate(stratified_folds(y, 10, seed)):
        tr = np.setdiff1d(np.arange(len(y)), test_idx)
        if dev:
            rng = np.random.default_rng(seed); tr = rng.permutation(tr)[: int(0.9*len(tr))]
        vocab = {}
        for i in tr:
            for g in G[i]: vocab.setdefault(g, len(vocab))
        def mat(idx):
            rows, cols = [], []
            for r, i in enumerate(idx):
                c = [vocab[g] for g in G[i] if g in vocab]; rows += [r]*len(c); cols += c
            return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(len(idx), len(vocab)))
        Xtr, Xte = mat(tr), mat(test_idx)
        p = alpha + np.asarray(Xtr[y[tr] == 1].sum(0)).ravel(); q = alpha + np.asarray(Xtr[y[tr] == 0].sum(0)).ravel()
        r = np.log(p/p.sum()) - np.log(q/q.sum())
        b = np.log((y[tr]==1).sum()/(y[tr]==0).sum())
        res = {}
        res["mnb"] = np.mean(((Xte @ r + b) > 0) == y[test_idx])
        Rtr, Rte = Xtr.multiply(r).tocsr(), Xte.multiply(r).tocsr()
        svm = LinearSVC(C=C, loss="squared_hinge").fit(Rtr, y[tr])
        w = svm.coef_.ravel(); wb = np.abs(w).mean()
        for be in (0.25, 0.5, 1.0):
            w2 = (1-be)*wb + be*w
            res[f"svm_b{be}"] = np.mean(((Rte @ w2 + svm.intercept_[0]) > 0) == y[test_idx])
        lr = LogisticRegression(C=C*4, max_iter=1000).fit(Rtr, y[tr])
        res["lr"] = lr.score(Rte, y[test_idx])
        for k, v in res.items(): accs.setdefault(k, []).append(v)
    return {k: round(100*np.mean(v), 2) for k, v in accs.items()}
for n, alpha, dev in [(2, 1.0, False), (2, 1.0, True), (3, 1.0, True), (2, 0.5, True)]:
    print(n, alpha, "dev-held" if dev else "all90", run(n=n, alpha=alpha, dev=dev), flush=True)
