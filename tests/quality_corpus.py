"""A small repository for the retrieval-quality tests: named definitions, distinctive lines, and functions long
enough to be split over several chunks, each with a docstring or a leading comment."""

from __future__ import annotations


def _long_body(prefix: str, lines: int, indent: str = "    ") -> list[str]:
    return [
        f"{indent}{prefix}_total_{i} = compute_stock_level(item_{i}, region='{prefix}_zone_{i}', factor={i + 3})"
        for i in range(lines)
    ]


INVENTORY_PY = "\n".join(
    [
        '"""Inventory bookkeeping for the warehouse."""',
        "",
        "",
        "def rebuild_inventory_report(items, regions):",
        '    """Rebuild the quarterly inventory report from scratch for every warehouse region.',
        "",
        "    Slow: reads every item.",
        '    """',
        *_long_body("warehouse", 70),
        "    return locals()",
        "",
        "",
        "class ShoppingCart:",
        '    """A customer\'s basket of products before checkout."""',
        "",
        "    def add_product(self, product, quantity=1):",
        '        """Put a product into the basket with the given quantity."""',
        "        self.lines.append((product.sku, quantity, product.unit_price))",
        "",
        "    def checkout_total(self):",
        '        """Sum the price of every line in the basket including taxes."""',
        "        return sum(quantity * unit_price for _sku, quantity, unit_price in self.lines)",
        "",
        "",
        "def parse_shipping_label(raw_label):",
        '    """Split a printed shipping label into carrier, tracking number and address."""',
        "    carrier, tracking, address = raw_label.split('|', 2)",
        "    return carrier.strip(), tracking.strip(), address.strip()",
        "",
    ]
)

PRICING_GO = "\n".join(
    [
        "package pricing",
        "",
        "// ApplySeasonalDiscount lowers the order price during the winter clearance sale.",
        "// It never goes below cost.",
        "func ApplySeasonalDiscount(order Order) Order {",
        *_long_body("season", 70, indent="\t"),
        "\treturn order",
        "}",
        "",
        "func RoundToCents(amount float64) float64 {",
        "\treturn math.Round(amount*100) / 100",
        "}",
        "",
    ]
)


def files() -> dict[str, str | bytes]:
    return {
        "shop/inventory.py": INVENTORY_PY,
        "shop/pricing.go": PRICING_GO,
        "README.md": "# Shop\n\nA toy shop for the retrieval-quality tests.\n",
    }
