//! The server's request bodies: TEI `/embed` and OpenAI `/v1/embeddings` (texts and token ids),
//! parsed and resolved against all-MiniLM-L6-v2's shape (6 layers, 384 dims) as the handlers do.

use starbucks_model::Size;
use starbucks_serve::{EmbedRequest, Input, OpenAiRequest, parse_body};

pub fn serve_request(data: &[u8]) {
    let full = Size::new(6, 384);
    let check = |inputs: &[Input], size: Size| {
        assert!(size.layers <= 6 && size.dims <= 384, "a size within the model");
        assert!(inputs.iter().all(|i| !matches!(i, Input::Ids(ids) if ids.is_empty())), "no empty id list");
    };
    if let Ok(request) = parse_body::<EmbedRequest>(data)
        && let Ok(resolved) = request.resolve(full)
    {
        check(&resolved.inputs, resolved.size);
    }
    if let Ok(request) = parse_body::<OpenAiRequest>(data)
        && let Ok((resolved, _)) = request.resolve(full)
    {
        check(&resolved.inputs, resolved.size);
    }
}
