"""The paper's benchmark on the shared protocols: data, methods, experiments and reports.

Not part of the installed ``pyclams``: put ``benchmarks/`` on ``sys.path`` (``benchmarks/run.py``
and the tests in ``benchmarks/tests`` do) to import it.

========================= ===============================================================
module                    job
========================= ===============================================================
``protocols``             P1, P2, P3, P5 reference/query pairs and the L1 folds
``registry``              the method registry (``run_method`` never raises)
``baselines``             SVM-reject, CellTypist, kNN/ingest, scANVI, Seurat, SingleR, scPred
``ebm_methods``           CLAMS, JEM, ResNet, VERA, HDGE, HDGE+JEM and the ablation grid
``vera`` / ``hdge``       VERA's generator and HDGE's contrastive term: trainer objectives
``scoring``               per-cell prediction table -> metrics
``cache`` / ``runner``    cached (experiment, protocol, method, seed) runs
``experiments``           annotation (Table 2), loco (Table 3), ablation (Tables 5/6)
``generation``            generated cells with a proportional / balanced buffer (Figs. 5/9)
``report`` / ``figures``  results.csv, README.md and figures of a results folder
``harness`` / ``cli``     ``run_benchmark``: everything above; ``cli``: ``benchmarks/run.py``
``defaults``              the default settings, sized for one hour on a 2-core CPU
========================= ===============================================================
"""
