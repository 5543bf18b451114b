//! Each kernel against burn's own op: values and gradients, on contiguous, shared and strided
//! inputs, and the scalar functions against f64 references.

use burn::backend::{Autodiff, Flex};
use burn::tensor::backend::Backend;
use burn::tensor::{Distribution, Tensor, TensorData, Tolerance};
use starbucks_kernels::{erf_f32, exp_f32, gelu_f32, gelu_grad_f32};

type Ad = Autodiff<Flex>;

/// The kernels as the model crate calls them: ours where the backend is flex, burn's otherwise.
fn gelu<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    starbucks_kernels::gelu(x).unwrap_or_else(burn::tensor::activation::gelu)
}

fn contiguous<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    starbucks_kernels::contiguous(x).unwrap_or_else(|x| x)
}

fn add_broadcast<B: Backend, const D: usize>(lhs: Tensor<B, D>, rhs: Tensor<B, D>) -> Tensor<B, D> {
    starbucks_kernels::add_broadcast(lhs, rhs).unwrap_or_else(|(l, r)| l + r)
}

fn with_dropout<B: Backend, const D: usize>(dropout: &burn::nn::Dropout, x: Tensor<B, D>) -> Tensor<B, D> {
    starbucks_kernels::dropout(x, dropout.prob).unwrap_or_else(|x| dropout.forward(x))
}

fn linear<B: Backend>(x: Tensor<B, 2>, weight: Tensor<B, 2>, bias: Option<Tensor<B, 1>>) -> Tensor<B, 2> {
    starbucks_kernels::linear(x, weight, bias).unwrap_or_else(|_| panic!("flex takes the linear kernel"))
}

/// Every 1/64 over [-12, 12], plus the extremes and special values.
fn inputs() -> Vec<f32> {
    let mut xs: Vec<f32> = (-768..=768).map(|i| i as f32 / 64.0).collect();
    xs.extend([f32::MIN, -1e30, -100.0, -1e-30, 0.0, 1e-30, 100.0, 1e30, f32::MAX]);
    xs
}

fn erf64(x: f64) -> f64 {
    burn_flex::ops::unary::erf_f64(x)
}

#[test]
fn erf_is_within_1e6_of_libm() {
    for x in inputs() {
        let err = (erf_f32(x) as f64 - erf64(x as f64)).abs();
        assert!(err < 1e-6, "erf({x}): error {err}");
    }
}

#[test]
fn exp_is_within_3e7_relative() {
    for x in (-873..=880).map(|i| i as f32 / 10.0) {
        let want = (x as f64).exp();
        let err = ((exp_f32(x) as f64 - want) / want).abs();
        assert!(err < 3e-7, "exp({x}): relative error {err}");
    }
    assert_eq!(exp_f32(-1000.0), exp_f32(-87.3));
    assert_eq!(exp_f32(0.0), 1.0);
    assert!(exp_f32(f32::NAN).is_nan());
}

#[test]
fn gelu_and_its_derivative_match_the_exact_forms() {
    for x in inputs() {
        let x64 = x as f64;
        let cdf = 0.5 * (1.0 + erf64(x64 / std::f64::consts::SQRT_2));
        let want = x64 * cdf;
        let got = gelu_f32(x) as f64;
        assert!((got - want).abs() <= 1e-6 * want.abs().max(1.0), "gelu({x}) = {got}, want {want}");
        let pdf = (-0.5 * x64 * x64).exp() / (2.0 * std::f64::consts::PI).sqrt();
        let want = cdf + x64 * pdf;
        let got = gelu_grad_f32(x) as f64;
        assert!((got - want).abs() < 2e-6, "gelu'({x}) = {got}, want {want}");
    }
}

fn random<const D: usize>(shape: [usize; D]) -> Tensor<Flex, D> {
    Tensor::random(shape, Distribution::Normal(0.0, 3.0), &Default::default())
}

#[test]
fn flex_and_autodiff_flex_take_the_kernel() {
    assert!(starbucks_kernels::gelu(random([2, 3, 4])).is_ok());
    assert!(starbucks_kernels::gelu(Tensor::<Ad, 3>::from_inner(random([2, 3, 4]))).is_ok());
}

#[test]
fn forward_matches_burn_on_contiguous_shared_and_strided_inputs() {
    let x = random([4, 33, 70]);
    let want = burn::tensor::activation::gelu(x.clone());
    // `x` is shared here (the kernel must not write into it), then unique, then strided.
    let before = x.to_data();
    let shared = gelu(x.clone());
    shared.to_data().assert_approx_eq::<f32>(&want.to_data(), Tolerance::rel_abs(1e-6, 1e-6));
    x.to_data().assert_eq(&before, true);
    let strided = gelu(x.clone().swap_dims(1, 2));
    let want_strided = burn::tensor::activation::gelu(x.clone().swap_dims(1, 2));
    strided.to_data().assert_approx_eq::<f32>(&want_strided.to_data(), Tolerance::rel_abs(1e-6, 1e-6));
    gelu(x).to_data().assert_approx_eq::<f32>(&want.to_data(), Tolerance::rel_abs(1e-6, 1e-6));
}

#[test]
fn contiguous_copies_views_exactly_and_passes_gradients_through() {
    // 600 rows of 8 after the first swap: several rayon tasks of `COPY_ROWS`.
    let x = random([4, 150, 8]);
    let views = [
        x.clone().swap_dims(0, 1),
        x.clone().narrow(2, 2, 4),
        x.clone().reshape([4, 150, 2, 4]).narrow(2, 1, 1).swap_dims(1, 2).reshape([4, 150, 4]),
        x.clone().swap_dims(1, 2).swap_dims(0, 1),
        x.clone().flip([1]),
    ];
    for view in views {
        let copy = contiguous(view.clone());
        copy.to_data().assert_eq(&view.to_data(), true);
        assert!(copy.into_primitive().tensor().is_contiguous());
    }
    let x = Tensor::<Ad, 3>::from_inner(x).require_grad();
    let weights = Tensor::<Ad, 3>::from_inner(random([150, 4, 8]));
    let grads = (contiguous(x.clone().swap_dims(0, 1)) * weights.clone()).sum().backward();
    let want = weights.inner().swap_dims(0, 1);
    x.grad(&grads).expect("x requires grad").to_data().assert_eq(&want.to_data(), true);
}

#[test]
fn add_broadcast_matches_burn_with_gradients() {
    let lhs = random([4, 3, 70, 70]);
    for rhs_shape in [[4, 1, 1, 70], [1, 3, 70, 1], [4, 3, 70, 70], [1, 1, 1, 1]] {
        let rhs = random(rhs_shape);
        let run = |ours: bool| -> [TensorData; 3] {
            let l = Tensor::<Ad, 4>::from_inner(lhs.clone()).require_grad();
            let r = Tensor::<Ad, 4>::from_inner(rhs.clone()).require_grad();
            let sum = if ours { add_broadcast(l.clone(), r.clone()) } else { l.clone() + r.clone() };
            let grads = (sum.clone() * sum.clone()).sum().backward();
            [sum.into_data(), l.grad(&grads).unwrap().into_data(), r.grad(&grads).unwrap().into_data()]
        };
        for (ours, burn) in run(true).iter().zip(&run(false)) {
            ours.assert_approx_eq::<f32>(burn, Tolerance::rel_abs(1e-5, 1e-4));
        }
    }
    // A strided `lhs` and a shared one give the same sums, and the shared one is untouched.
    let rhs = random([4, 1, 1, 70]);
    let strided = lhs.clone().swap_dims(2, 3);
    add_broadcast(strided.clone(), rhs.clone().swap_dims(2, 3))
        .to_data()
        .assert_approx_eq::<f32>(&(strided + rhs.clone().swap_dims(2, 3)).to_data(), Tolerance::absolute(1e-6));
    let before = lhs.to_data();
    let _ = add_broadcast(lhs.clone(), rhs);
    lhs.to_data().assert_eq(&before, true);
}

#[test]
fn dropout_keeps_1_minus_p_scales_and_masks_the_gradient_alike() {
    let dropout = burn::nn::DropoutConfig::new(0.1).init();
    let run = || {
        let x = Tensor::<Ad, 2>::ones([64, 1000], &Default::default()).require_grad();
        let weights = Tensor::<Ad, 2>::from_inner(random([64, 1000]));
        let y = with_dropout(&dropout, x.clone());
        let grads = (y.clone() * weights.clone()).sum().backward();
        let y: Vec<f32> = y.into_data().to_vec().unwrap();
        let grad: Vec<f32> = x.grad(&grads).unwrap().into_data().to_vec().unwrap();
        let weights: Vec<f32> = weights.into_data().to_vec().unwrap();
        (y, grad, weights)
    };
    let (y, grad, weights) = run();
    let dropped = y.iter().filter(|&&v| v == 0.0).count() as f64 / y.len() as f64;
    assert!((dropped - 0.1).abs() < 0.005, "dropped {dropped}");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.9).abs() < 1e-6));
    for ((&y, &g), &w) in y.iter().zip(&grad).zip(&weights) {
        assert!((g - y * w).abs() < 1e-6, "gradient {g} for output {y} and weight {w}");
    }
    // (The mask's dependence on `Backend::seed` alone is left to the training tests: the
    // tests here draw from the same global stream in parallel.)
    // Without autodiff, dropout is the identity, as burn's.
    let x = random([3, 4]);
    with_dropout(&dropout, x.clone()).into_data().assert_eq(&x.into_data(), true);
}

/// `t` in a buffer of its own, laid out contiguously.
fn contiguous_copy(t: Tensor<Flex, 2>) -> Tensor<Flex, 2> {
    Tensor::from_data(t.into_data(), &Default::default())
}

#[test]
fn linear_matches_burn_with_gradients_on_strided_inputs() {
    let x = random([70, 24]);
    let weight = random([24, 33]);
    let bias = random([33]);
    let run = |ours: bool, transposed: bool, with_bias: bool| -> Vec<TensorData> {
        let x = Tensor::<Ad, 2>::from_inner(x.clone()).require_grad();
        // Transposed: the parameter is stored `[out, in]` and read through the strides
        // of its transposed view.
        let stored = if transposed { contiguous_copy(weight.clone().transpose()) } else { weight.clone() };
        let w = Tensor::<Ad, 2>::from_inner(stored).require_grad();
        let b = Tensor::<Ad, 1>::from_inner(bias.clone()).require_grad();
        let w_used = if transposed { w.clone().transpose() } else { w.clone() };
        let b_used = with_bias.then(|| b.clone());
        let y = if ours {
            linear(x.clone(), w_used, b_used)
        } else {
            let y = x.clone().matmul(w_used);
            match b_used {
                Some(b) => y + b.unsqueeze(),
                None => y,
            }
        };
        let grads = (y.clone() * y.clone()).sum().backward();
        let mut out = vec![y.into_data(), x.grad(&grads).unwrap().into_data(), w.grad(&grads).unwrap().into_data()];
        if with_bias {
            out.push(b.grad(&grads).unwrap().into_data());
        }
        out
    };
    for (transposed, with_bias) in [(false, true), (true, true), (false, false)] {
        for (ours, burn) in run(true, transposed, with_bias).iter().zip(&run(false, transposed, with_bias)) {
            ours.assert_approx_eq::<f32>(burn, Tolerance::rel_abs(1e-4, 1e-3));
        }
    }
    let strided = |t: Tensor<Flex, 2>| contiguous_copy(t.transpose()).transpose();
    assert!(!strided(x.clone()).into_primitive().tensor().is_contiguous());
    linear(strided(x.clone()), strided(weight.clone()), Some(bias.clone()))
        .into_data()
        .assert_approx_eq::<f32>(&(x.matmul(weight) + bias.unsqueeze()).into_data(), Tolerance::rel_abs(1e-5, 1e-4));
}

#[test]
fn gradient_matches_burn() {
    let x = random([3, 17, 40]);
    let weights = random([3, 17, 40]);
    let grad = |ours: bool| -> TensorData {
        let x = Tensor::<Ad, 3>::from_inner(x.clone()).require_grad();
        let y = if ours { gelu(x.clone()) } else { burn::tensor::activation::gelu(x.clone()) };
        let grads = (y * Tensor::from_inner(weights.clone())).sum().backward();
        x.grad(&grads).expect("x requires grad").into_data()
    };
    grad(true).assert_approx_eq::<f32>(&grad(false), Tolerance::rel_abs(1e-5, 1e-5));
}
