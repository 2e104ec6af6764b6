import TestSupport

/// Child processes of tests, started by executable name from where the package built them.
typealias TestProcess = ChildProcess
