"""What the tests share and are not tests themselves: the image's environment, the request
builders, the local cloud's and the chain stack's helpers, one HCL block parser. Test modules and
conftest files import from here, never from each other."""
