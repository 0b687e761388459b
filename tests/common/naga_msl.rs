//! naga's own MSL for a WGSL kernel (for `msl_interface`, which compiles it
//! against the shim, and `msl_exec`, which runs the COOP variants' WGSL
//! that way): buffer slots assigned as wgpu's Metal backend does, in
//! (group, binding) order, and a sizes buffer after them.

use q4gpu::gpu::shader::ENTRY_POINT;

/// naga's MSL for `module` (validated as `info`).
pub fn naga_msl(module: &naga::Module, info: &naga::valid::ModuleInfo, what: &str) -> String {
    let mut resources = naga::back::msl::BindingMap::default();
    let mut bound: Vec<(naga::ResourceBinding, bool)> = module
        .global_variables
        .iter()
        .filter_map(|(_, g)| {
            let rb = g.binding?;
            let mutable = matches!(g.space, naga::AddressSpace::Storage { access } if access.contains(naga::StorageAccess::STORE));
            Some((rb, mutable))
        })
        .collect();
    bound.sort_by_key(|(rb, _)| (rb.group, rb.binding));
    let n = bound.len() as u8;
    for (slot, (rb, mutable)) in bound.into_iter().enumerate() {
        resources.insert(
            rb,
            naga::back::msl::BindTarget {
                buffer: Some(slot as u8),
                mutable,
                ..Default::default()
            },
        );
    }
    let mut per_entry_point_map = naga::back::msl::EntryPointResourceMap::default();
    per_entry_point_map.insert(
        ENTRY_POINT.to_string(),
        naga::back::msl::EntryPointResources {
            resources,
            sizes_buffer: Some(n),
            ..Default::default()
        },
    );
    let options = naga::back::msl::Options {
        lang_version: (2, 4),
        per_entry_point_map,
        fake_missing_bindings: false,
        ..Default::default()
    };
    let pipeline = naga::back::msl::PipelineOptions {
        entry_point: Some((naga::ShaderStage::Compute, ENTRY_POINT.to_string())),
        ..Default::default()
    };
    naga::back::msl::write_string(module, info, &options, &pipeline)
        .unwrap_or_else(|e| panic!("{what}: naga MSL: {e}"))
        .0
}
