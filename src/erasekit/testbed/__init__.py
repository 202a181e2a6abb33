"""The built-in testbed: ShapeCanvas data, a tiny text-to-image pipeline and a judge."""
