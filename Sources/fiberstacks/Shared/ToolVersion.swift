/// The version of FiberStacks: `fiberstacks --version`, and `tool_version` in every JSON report of
/// `fiberstacks` and of `fiberstacks-bench`, which shares this directory.
let toolVersion = "0.1.0"
