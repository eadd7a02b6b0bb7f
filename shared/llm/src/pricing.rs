//! A small table of list prices, for an *estimated* cost per model call. It is an estimate,
//! not a bill: regional Bedrock endpoints, batch and priority tiers, long-context surcharges
//! and future price changes are not modelled. Unknown models cost 0.

/// USD per million tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
}

/// `(family and version as it appears in the model id, price)`, most specific first. Bedrock
/// ids (`global.anthropic.claude-sonnet-4-6`, `…claude-haiku-4-5-20251001-v1:0`) contain the
/// same family names.
pub const PRICES: &[(&str, Price)] = &[
    ("claude-haiku-5-5", p(0.10, 0.50, 0.01)),
    ("claude-sonnet-5-5", p(2.0, 10.0, 0.10)),
    ("claude-sonnet-5", p(2.0, 10.0, 0.20)),
    ("claude-opus-5-5", p(4.0, 20.0, 0.40)),
    ("claude-opus-5", p(5.0, 25.0, 0.50)),
    ("claude-haiku-4-5", p(1.0, 5.0, 0.10)),
    ("claude-sonnet-4", p(3.0, 15.0, 0.30)),
    ("claude-opus-4-1", p(15.0, 75.0, 1.50)),
    ("claude-opus-4-20250514", p(15.0, 75.0, 1.50)),
    ("claude-opus-4", p(5.0, 25.0, 0.50)),
    ("claude-3-5-haiku", p(0.80, 4.0, 0.08)),
    ("claude-3-7-sonnet", p(3.0, 15.0, 0.30)),
    ("claude-3-5-sonnet", p(3.0, 15.0, 0.30)),
    ("claude-3-haiku", p(0.25, 1.25, 0.03)),
];

const fn p(input: f64, output: f64, cache_read: f64) -> Price {
    Price {
        input,
        output,
        cache_read,
    }
}

pub fn price_of(model: &str) -> Option<Price> {
    let m = model.to_ascii_lowercase();
    PRICES
        .iter()
        .find(|(key, _)| m.contains(key))
        .map(|(_, price)| *price)
}

/// `input_tokens` are uncached input; writing to the cache costs 1.25× the input price.
pub fn estimate_usd(
    model: &str,
    input_tokens: u64,
    cache_write_tokens: u64,
    cache_read_tokens: u64,
    output_tokens: u64,
) -> f64 {
    let Some(price) = price_of(model) else {
        return 0.0;
    };
    let per = |tokens: u64, usd: f64| tokens as f64 * usd / 1_000_000.0;
    per(input_tokens, price.input)
        + per(cache_write_tokens, price.input * 1.25)
        + per(cache_read_tokens, price.cache_read)
        + per(output_tokens, price.output)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bedrock_and_anthropic_ids_find_the_same_price() {
        assert_eq!(
            price_of("global.anthropic.claude-haiku-4-5-20251001-v1:0"),
            price_of("claude-haiku-4-5")
        );
        assert_eq!(price_of("claude-sonnet-4-6").unwrap().input, 3.0);
        assert_eq!(price_of("claude-sonnet-5-5").unwrap().input, 2.0);
        assert_eq!(price_of("claude-opus-4-1-20250805").unwrap().output, 75.0);
        assert!(price_of("gpt-4o").is_none());
    }

    #[test]
    fn cost_counts_every_kind_of_token() {
        // 1M uncached in + 1M out on Sonnet 4.6 = $3 + $15.
        let c = estimate_usd("claude-sonnet-4-6", 1_000_000, 0, 0, 1_000_000);
        assert!((c - 18.0).abs() < 1e-9);
        let cached = estimate_usd("claude-sonnet-4-6", 0, 0, 1_000_000, 0);
        assert!((cached - 0.30).abs() < 1e-9);
        assert_eq!(estimate_usd("unknown-model", 10, 10, 10, 10), 0.0);
    }
}
