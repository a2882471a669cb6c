#pragma once
// doctest, safe next to LibTorch. Without glog, c10/util/Logging.h defines its own CHECK (a fatal log, not a test
// assertion), and of two CHECK definitions the later one wins: a test file that included doctest first and a
// torch header after it would silently run c10's CHECK. Including c10's header first (it has an include guard)
// makes CHECK doctest's in every test file, whatever it includes afterwards.
#include <c10/util/Logging.h>
#include <doctest/doctest.h>
