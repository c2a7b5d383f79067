"""Benchmarks on the shared protocols: data loading, methods, experiments and reports.

========================= ===============================================================
module                    job
========================= ===============================================================
``protocols``             P1, P2, P3, P5 reference/query pairs and the L1 folds
``registry``              the method registry (``run_method`` never raises)
``baselines``             SVM-reject, CellTypist, kNN/ingest, scANVI, Seurat, SingleR, scPred
``ebm_methods``           CLAMS, JEM, ResNet, VERA, HDGE, HDGE+JEM and the ablation grid
``scoring``               per-cell prediction table -> metrics
``cache`` / ``runner``    cached (experiment, protocol, method, seed) runs
``experiments``           annotation (Table 2), loco (Table 3), ablation (Tables 5/6)
``generation``            generated cells with a proportional / balanced buffer (Figs. 5/9)
``report`` / ``figures``  results.csv, README.md and figures of a results folder
``harness``               ``run_benchmark``: everything above (``pyclams benchmark``)
``defaults``              the default settings, sized for one hour on a 2-core CPU
========================= ===============================================================
"""
