"""The MCP face of the memory: tools and resources over `mahavishnu_assets.api`, served by `mahavishnu serve`."""
