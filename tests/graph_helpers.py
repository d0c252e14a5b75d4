"""Helpers shared by the test files (not a test module itself)."""


def ops_in_graph(root):
    """The Function types recorded in the graph below the tensor `root` (iterative walk)."""
    ops, stack, visited = set(), [root], set()
    while stack:
        node = stack.pop()
        if id(node) in visited or node._ctx is None:
            continue
        visited.add(id(node))
        ops.add(type(node._ctx))
        stack.extend(node._ctx.inputs)
    return ops


def ops_in_cases(cases):
    """The Function types used by a dict of gradcheck cases (name -> () -> (func, inputs))."""
    ops = set()
    for build in cases.values():
        func, inputs = build()
        ops |= ops_in_graph(func(*inputs))
    return ops
