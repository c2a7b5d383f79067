# clams_demo_data(): the bundled real data as Seurat objects.

test_that("clams_demo_data returns the bundled reference and query as Seurat objects", {
  skip_if_no_pyclams()
  demo <- clams_demo_data()
  expect_named(demo, c("reference", "query"))
  expect_s4_class(demo$reference, "Seurat")
  expect_equal(dim(demo$reference), c(3253L, 800L))
  expect_equal(dim(demo$query), c(3253L, 2638L))
  expect_setequal(unique(demo$reference$cell_type), c("B", "CD4 T", "CD8 T"))
  expect_true(all(c("NK", "CD14+ Mono", "Platelet") %in% demo$query$cell_type))
  counts <- SeuratObject::GetAssayData(demo$reference, slot = "counts")
  expect_s4_class(counts, "dgCMatrix")
  expect_true(all(counts@x == round(counts@x)) && all(counts@x > 0))
  one <- clams_demo_data("query")
  expect_s4_class(one, "Seurat")
  expect_identical(colnames(one), colnames(demo$query))
})

test_that("clams_demo_data refuses an unknown name with one clear error", {
  expect_error(clams_demo_data("atlas"), "reference.*query")
  expect_error(clams_demo_data(NA_character_), "reference.*query")
})
