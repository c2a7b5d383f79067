library(testthat)
library(pyclams)

test_check("pyclams")
